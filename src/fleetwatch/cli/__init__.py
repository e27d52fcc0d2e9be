"""The `fleetwatch` command: serve, demo, simulate, query, watch, user, secret.

Each sub-command lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from fleetwatch import __version__


class _SortedGroup(TyperGroup):
    """Lists commands alphabetically, whatever order their modules were imported in."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(self.commands)


app = typer.Typer(
    name="fleetwatch",
    cls=_SortedGroup,
    help="Live and continuous queries for an osquery fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fleetwatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Live and continuous queries for an osquery fleet."""


def _register() -> None:
    # Imported for their side effect of adding commands to `app`.
    from fleetwatch.cli import admin as _admin  # noqa: F401
    from fleetwatch.cli import config_cmd as _config_cmd  # noqa: F401
    from fleetwatch.cli import demo as _demo  # noqa: F401
    from fleetwatch.cli import query as _query  # noqa: F401
    from fleetwatch.cli import serve as _serve  # noqa: F401
    from fleetwatch.cli import simulate as _simulate  # noqa: F401
    from fleetwatch.cli import watch as _watch  # noqa: F401


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
