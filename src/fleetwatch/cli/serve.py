"""`fleetwatch serve`: run the server."""

from __future__ import annotations

from pathlib import Path

from fleetwatch.cli import app
from fleetwatch.cli.settings_options import (
    DatabaseUrlOpt,
    DataDirOpt,
    EnrollSecretOpt,
    HoldOpt,
    HostOpt,
    LogLevelOpt,
    PortOpt,
    RedisUrlOpt,
    TlsCertOpt,
    TlsKeyOpt,
    TlsSelfSignedOpt,
    build_settings,
)
from fleetwatch.server import run_server


@app.command()
def serve(
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
    redis_url: str | None = RedisUrlOpt,
    tls_cert: Path | None = TlsCertOpt,
    tls_key: Path | None = TlsKeyOpt,
    tls_self_signed: bool | None = TlsSelfSignedOpt,
    distributed_hold: float | None = HoldOpt,
    log_level: str | None = LogLevelOpt,
    enroll_secret: str | None = EnrollSecretOpt,
) -> None:
    """Run the fleetwatch server (agent API, user API and UI on one port)."""
    settings = build_settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_self_signed=tls_self_signed,
        distributed_hold=distributed_hold,
        log_level=log_level,
        enroll_secret=enroll_secret,
    )
    run_server(settings)
