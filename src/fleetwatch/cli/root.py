"""The `fleetwatch` command's root: the Typer app every sub-command module registers on.

Kept apart from the package face (which imports the commands) so that commands importing
`app` make no circle.
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
