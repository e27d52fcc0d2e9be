"""Flags shared by the commands that start a server: each maps to a Settings field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from fleetwatch.config import Settings


def build_settings(**flags: Any) -> Settings:
    """Settings from FLEETWATCH_* variables, overridden by the flags that were given.

    A wrong setting stops start-up with a message naming it.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            lines.append(f"  --{name.replace('_', '-')} / FLEETWATCH_{name.upper()}: {err['msg']}")
        typer.echo("fleetwatch: invalid settings:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from exc


HostOpt = typer.Option(None, "--host", help="Address to listen on. [default: 127.0.0.1]")
PortOpt = typer.Option(None, "--port", help="Port to listen on. [default: 8412]")
DataDirOpt = typer.Option(None, "--data-dir", help="Where the SQLite database and certs live.")
DatabaseUrlOpt = typer.Option(
    None, "--database-url", help="postgresql://... to use PostgreSQL instead of SQLite."
)
RedisUrlOpt = typer.Option(None, "--redis-url", help="redis://... for a multi-node cluster.")
TlsCertOpt = typer.Option(None, "--tls-cert", help="PEM certificate (chain) to serve HTTPS with.")
TlsKeyOpt = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert.")
TlsSelfSignedOpt = typer.Option(
    None,
    "--tls-self-signed/--no-tls-self-signed",
    help="Make a self-signed certificate in the data directory and serve HTTPS.",
)
HoldOpt = typer.Option(
    None, "--distributed-hold", help="Seconds distributed/read waits for work (below 14)."
)
LogLevelOpt = typer.Option(None, "--log-level", help="debug, info, warning, error.")
EnrollSecretOpt = typer.Option(
    None, "--enroll-secret", help="A global enroll secret to add at start-up."
)

__all__ = ["Path", "build_settings"]
