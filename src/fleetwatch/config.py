"""Settings from flags and FLEETWATCH_* environment variables, in one typed object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: osquery's client gives up on a request after 16 s (hard-coded); a hold must end well before.
OSQUERY_CLIENT_TIMEOUT_S = 16.0


class Settings(BaseSettings):
    """Every server setting. Flags override FLEETWATCH_* variables, which override defaults."""

    model_config = SettingsConfigDict(env_prefix="FLEETWATCH_", extra="forbid")

    #: Address to listen on (agent API, user API and UI share one port).
    host: str = "127.0.0.1"
    #: Port to listen on.
    port: int = Field(8412, ge=0, le=65535)
    #: Where the SQLite database and the self-signed certificate live.
    data_dir: Path = Path("./fleetwatch-data")
    #: postgresql://user:pass@host/db to use PostgreSQL instead of SQLite.
    database_url: str | None = None
    #: redis://host:port for a multi-node cluster (not used by a single node).
    redis_url: str | None = None
    #: Seconds a cluster node keeps a once-only job (webhooks, sweeps) without renewing it;
    #: another node takes over within this time after its owner dies.
    cluster_lease_ttl: float = Field(3.0, ge=0.5, le=60)
    #: PEM certificate (chain) to serve HTTPS with.
    tls_cert: Path | None = None
    #: PEM private key of the certificate.
    tls_key: Path | None = None
    #: Make a self-signed certificate in the data directory and serve HTTPS.
    tls_self_signed: bool = False
    #: debug, info, warning, error or critical.
    log_level: str = "info"
    #: Log line format: `json` (one JSON object per line) or `text`.
    log_format: Literal["json", "text"] = "json"

    #: Bearer token that may read /metrics on the main port (besides admins' tokens).
    metrics_token: str | None = None
    #: Also serve /metrics, without authentication, on this port (0 picks a free one).
    metrics_port: int | None = Field(None, ge=0, le=65535)
    #: Address of the metrics port (default: --host).
    metrics_host: str | None = None

    #: osquery result and status logs are also appended to JSON-lines files here.
    log_forward_dir: Path | None = None
    #: Size at which a forwarded log file is rotated (bytes).
    log_forward_max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    #: Rotated forwarded log files kept per log type.
    log_forward_backups: int = Field(5, ge=0, le=1000)
    #: osquery result and status logs are also POSTed to this URL, in batches.
    log_forward_url: str | None = Field(None, pattern=r"^https?://")
    #: Time allowed for one forwarding POST (seconds).
    log_forward_timeout: float = Field(10.0, gt=0)
    #: Log lines queued per forwarding destination before new batches are dropped (counted).
    log_forward_queue_limit: int = Field(100_000, ge=1)

    #: A global enroll secret added at start-up (more with `fleetwatch secret add` or the API).
    enroll_secret: str | None = None
    #: Email of the first admin, created on an empty database.
    admin_email: str | None = None
    #: Password of that first admin.
    admin_password: str | None = None

    #: How long distributed/read holds a request with nothing pending (long-poll).
    distributed_hold: float = Field(10.0, ge=0.0)
    #: distributed_interval pushed to agents in the config options.
    distributed_interval: int = Field(1, ge=1, le=3600)
    #: logger_tls_period pushed to agents.
    logger_tls_period: int = Field(10, ge=1, le=3600)
    #: How often detail queries refresh a host's inventory (jittered by up to 10 %).
    detail_interval: float = Field(3600.0, gt=0)
    #: How often hosts re-run dynamic label queries (jittered by up to 10 %; new labels at once).
    label_interval: float = Field(3600.0, gt=0)
    #: How often batched seen_time updates are flushed to the store.
    seen_flush_interval: float = Field(2.0, gt=0)
    #: Largest accepted agent request body, before and after gzip decompression.
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    #: How long changes stay in the change log (seconds) for resuming subscribers.
    change_retention: float = Field(7 * 24 * 3600.0, gt=0)
    #: How often expired documents, expired query tasks and old changes are swept (seconds).
    expiry_sweep_interval: float = Field(1.0, gt=0)
    #: Notifications queued per stream subscriber before it gets a `resync` and is closed.
    subscriber_queue_limit: int = Field(10_000, ge=1)
    #: Consecutive failed webhook deliveries after which the subscription is dropped.
    webhook_failure_limit: int = Field(5, ge=1)
    #: First retry delay of a failed webhook delivery (doubles per failure, capped at 30 s).
    webhook_retry_base: float = Field(0.5, gt=0)
    #: Time allowed for one webhook delivery before it counts as failed (seconds).
    webhook_timeout: float = Field(10.0, gt=0)
    #: Seconds between SSE keep-alive comment lines.
    sse_keepalive: float = Field(15.0, gt=0)

    #: Default time a live query campaign waits for its online targets (seconds).
    live_query_timeout: float = Field(120.0, gt=0)
    #: Default time a campaign stays queued for offline targets (seconds); 0 disables queueing.
    live_query_queue_expiry: float = Field(24 * 3600.0, ge=0)
    #: Rows kept per host per campaign; more are dropped and the result marked truncated.
    live_query_max_rows_per_host: int = Field(10_000, ge=1)
    #: Rows kept per campaign over all hosts.
    live_query_max_rows_per_campaign: int = Field(1_000_000, ge=1)
    #: Bytes of row data kept per host result (Fleet caps a whole write at 5 MiB).
    live_query_max_result_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    #: How long a finished campaign and its results are kept (seconds).
    live_query_result_retention: float = Field(30 * 24 * 3600.0, gt=0)
    #: Administrators' kill switch: no new live query campaigns (the default until an admin
    #: PATCHes server_settings.live_query_disabled).
    live_queries_disabled: bool = False

    @field_validator("distributed_hold")
    @classmethod
    def _hold_below_osquery_timeout(cls, value: float) -> float:
        if value >= OSQUERY_CLIENT_TIMEOUT_S - 2:
            raise ValueError(
                f"distributed_hold must be below {OSQUERY_CLIENT_TIMEOUT_S - 2:g} s: osquery "
                f"gives up on a request after {OSQUERY_CLIENT_TIMEOUT_S:g} s"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("log_level must be one of debug, info, warning, error, critical")
        return level

    def effective_database_url(self) -> str:
        """The SQLAlchemy async URL: the given one, or SQLite in the data directory."""
        if self.database_url:
            return async_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'fleetwatch.db'}"

    @property
    def uses_tls(self) -> bool:
        return self.tls_self_signed or self.tls_cert is not None


def async_database_url(url: str) -> str:
    """Map plain PostgreSQL/SQLite URLs to their async SQLAlchemy drivers."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url
