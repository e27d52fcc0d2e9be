"""The `fleetwatch` command: serve, demo, simulate, query, watch, policy, user, secret.

Each sub-command lives in its own module and registers itself on `app` (`cli/root.py`).
An adapter: may import `server`, `config`, the services below and sim/; only `__main__.py`
imports it.
"""

from __future__ import annotations

from fleetwatch.cli.root import app

__all__ = ["app", "main"]


def _register() -> None:
    # Imported for their side effect of adding commands to `app`.
    from fleetwatch.cli import admin as _admin  # noqa: F401
    from fleetwatch.cli import config_cmd as _config_cmd  # noqa: F401
    from fleetwatch.cli import demo as _demo  # noqa: F401
    from fleetwatch.cli import policy as _policy  # noqa: F401
    from fleetwatch.cli import query as _query  # noqa: F401
    from fleetwatch.cli import serve as _serve  # noqa: F401
    from fleetwatch.cli import simulate as _simulate  # noqa: F401
    from fleetwatch.cli import watch as _watch  # noqa: F401


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
