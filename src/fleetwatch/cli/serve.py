"""`fleetwatch serve`: run the server."""

from __future__ import annotations

from fleetwatch.cli.root import app
from fleetwatch.cli.settings_options import settings_flags
from fleetwatch.config import Settings
from fleetwatch.server import run_server


@app.command()
@settings_flags
def serve(settings: Settings) -> None:
    """Run the fleetwatch server (agent API, user API and UI on one port).

    Every setting is a flag, a FLEETWATCH_* variable or a key of the --config TOML file.
    """
    run_server(settings)
