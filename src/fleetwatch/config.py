"""Settings from flags and FLEETWATCH_* environment variables, in one typed object."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleetwatch.destinations.settings import NAME_PATTERN, DestinationSettings
from fleetwatch.outbound.addresses import Network, parse_networks

#: osquery's client gives up on a request after 16 s (hard-coded); a hold must end well before.
OSQUERY_CLIENT_TIMEOUT_S = 16.0
#: Destination names of the log forwarding settings (log_forward_dir, log_forward_url).
LEGACY_DESTINATIONS = ("log_forward_dir", "log_forward_url")
#: Shortest enroll secret accepted (fleetwatch.fleet.secrets.MIN_SECRET_LENGTH uses it).
MIN_ENROLL_SECRET_LENGTH = 16


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
    #: Server processes sharing the port, each a cluster node (needs --database-url
    #: postgresql://... and --redis-url); a worker that dies is started again.
    workers: int = Field(1, ge=1, le=256)
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
    #: Named destinations for campaign and saved query result rows (`"destinations":
    #: ["siem"]`) and, with `osquery_logs`, osquery logs: `[destinations.NAME]` tables of the
    #: config file with `type` (http, splunk_hec, elasticsearch, file), `url` (or `path`),
    #: `token`, `index`, `batch_size`, `interval`, `retry_max` (docs/destinations.md); as a
    #: flag or variable, the same as JSON.
    destinations: dict[str, DestinationSettings] = {}

    #: A global enroll secret added at start-up, at least 16 characters (more with
    #: `fleetwatch secret add` or the API).
    enroll_secret: str | None = None
    #: Failed enrolls (wrong secret) allowed per client address per minute, in a burst of as
    #: many; then that address's enrolls get 429 until one is back. 0 turns the limit off.
    enroll_failure_limit: int = Field(60, ge=0)
    #: Enrolls in progress at once at most; beyond, new ones are answered at once with a
    #: busy error (503, JSON) that osquery retries, instead of queueing past its 16 s
    #: timeout. 0: no bound by count (the age bound, agent_queue_wait, still applies).
    enroll_backlog: int = Field(2000, ge=0)
    #: Agent requests waiting for their turn at most; beyond, new ones are shed like
    #: enrolls past enroll_backlog. 0: no bound by count.
    agent_queue_limit: int = Field(10_000, ge=0)
    #: Longest wait for a turn (or enroll in progress) that new agent requests are queued
    #: behind, as the oldest one's age or the queue over its measured drain rate; beyond,
    #: they are shed, so what is served is answered well within osquery's 16 s. 0: no bound.
    agent_queue_wait: float = Field(5.0, ge=0.0, le=15.0)
    #: Email of the first admin, created on an empty database.
    admin_email: str | None = None
    #: Password of that first admin.
    admin_password: str | None = None
    #: A login session ends after this many seconds without use (API tokens do not).
    session_idle_timeout: float = Field(24 * 3600.0, gt=0)
    #: Failed logins allowed a minute from one client address, over all accounts.
    login_address_limit: int = Field(30, ge=1)

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
    #: Longest a query task's query may run in the database (seconds); it is then stopped
    #: and the request answered 400. The query also stops when the client disconnects.
    query_task_timeout: float = Field(30.0, gt=0)
    #: Consecutive failed webhook deliveries after which the subscription is dropped.
    webhook_failure_limit: int = Field(5, ge=1)
    #: First retry delay of a failed webhook delivery (doubles per failure, capped at 30 s).
    webhook_retry_base: float = Field(0.5, gt=0)
    #: Time allowed for one webhook delivery before it counts as failed (seconds).
    webhook_timeout: float = Field(10.0, gt=0)
    #: Webhook subscriptions one query task may have; one more is answered 429.
    max_webhooks_per_task: int = Field(20, ge=1)
    #: Comma-separated CIDRs (e.g. `127.0.0.0/8,::1/128`) that webhooks may call although
    #: they are loopback, link-local, private, multicast, reserved or unspecified addresses
    #: (refused otherwise, as server-side request forgery).
    outbound_allow: str = ""
    #: Seconds between SSE keep-alive comment lines.
    sse_keepalive: float = Field(15.0, gt=0)
    #: Query tasks one user may hold at once, each live result page set of a direct task
    #: counted as one; one more answers 429.
    max_tasks_per_user: int = Field(200, ge=1)
    #: Query task and live query streams (WebSocket, SSE) one user may hold open on one node;
    #: one more answers 429.
    max_streams_per_user: int = Field(50, ge=1)
    #: How often each node re-checks that the tokens its open streams were opened with are
    #: still valid (seconds); a revoked token's streams end at once on the node that revoked
    #: it (and, with Redis, on every node), otherwise within this.
    stream_token_check_interval: float = Field(5.0, gt=0)
    #: Longest lifetime of a query task (seconds): a later documentExpirationTimeMicros,
    #: "never" (2**63-1) included, is lowered to now plus this.
    max_task_lifetime: float = Field(30 * 24 * 3600.0, gt=0)

    #: Default time a live query campaign waits for its online targets (seconds).
    live_query_timeout: float = Field(120.0, gt=0)
    #: Default time a campaign stays queued for offline targets (seconds); 0 disables queueing.
    live_query_queue_expiry: float = Field(24 * 3600.0, ge=0)
    #: Rows kept per host per campaign; more are dropped and the result marked truncated
    #: (`truncated_reason` rows_per_host).
    live_query_max_rows_per_host: int = Field(10_000, ge=1)
    #: Rows kept per campaign over all hosts (`truncated_reason` rows_per_campaign).
    live_query_max_rows_per_campaign: int = Field(1_000_000, ge=1)
    #: Bytes of row data kept per host result (Fleet caps a whole write at 5 MiB;
    #: `truncated_reason` result_bytes).
    live_query_max_result_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    #: Rows a campaign stores over all hosts unless its run gives `max_rows`; once reached
    #: no host is asked any more and later answers are counted, not stored (`truncated_reason`
    #: max_rows).
    campaign_max_rows: int = Field(1_000_000, ge=1)
    #: Bytes of row data a campaign stores over all hosts unless its run gives `max_bytes`;
    #: then as campaign_max_rows (`truncated_reason` max_bytes).
    campaign_max_bytes: int = Field(1024 * 1024 * 1024, ge=1)
    #: Live query campaigns one user may have running or queued for offline hosts; one more
    #: answers 429.
    max_campaigns_per_user: int = Field(100, ge=1)
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

    @field_validator("enroll_secret")
    @classmethod
    def _long_enough_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip()) < MIN_ENROLL_SECRET_LENGTH:
            raise ValueError(
                f"enroll_secret needs at least {MIN_ENROLL_SECRET_LENGTH} characters: a short "
                "one can be guessed (e.g. `openssl rand -hex 24` makes a good one)"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("log_level must be one of debug, info, warning, error, critical")
        return level

    @field_validator("outbound_allow", mode="before")
    @classmethod
    def _cidrs(cls, value: object) -> str:
        # A TOML file may list the networks; flags and variables give them comma-separated.
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            raise ValueError("outbound_allow must be comma-separated CIDRs like 10.0.0.0/8")
        return ",".join(str(n) for n in parse_networks(value))

    @field_validator("destinations", mode="before")
    @classmethod
    def _destination_tables(cls, value: object) -> object:
        # A flag or variable gives the tables as JSON.
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(
                    'destinations must be JSON like {"siem": {"type": "http", "url": '
                    f'"https://..."}}: {exc}'
                ) from None
        if isinstance(value, dict):
            for name in value:
                if not re.match(NAME_PATTERN, str(name)):
                    raise ValueError(
                        f"destination name {name!r}: use letters, digits, _ . - (at most 64)"
                    )
                if name in LEGACY_DESTINATIONS:
                    raise ValueError(
                        f"destination name {name!r} is taken by the {name} setting: choose "
                        "another name"
                    )
        return value

    @property
    def outbound_networks(self) -> tuple[Network, ...]:
        """`outbound_allow` parsed."""
        return parse_networks(self.outbound_allow)

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
