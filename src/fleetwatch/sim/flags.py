"""The osquery flags a simulated agent runs with, and the config `options` that change them.

Defaults are osquery's, except where the Fleet-documented command line sets them (endpoints,
`distributed_interval=10`, `logger_tls_period=10`, `config_refresh=60`) and where noted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

#: Flags osquery accepts from the config's `options` (runtime flags); CLI-only flags such as
#: `config_refresh` or the enroll/config endpoints are ignored there with a warning.
RUNTIME_FLAGS = frozenset(
    {
        "distributed_interval",
        "distributed_tls_max_attempts",
        "distributed_tls_read_endpoint",
        "distributed_tls_write_endpoint",
        "logger_tls_endpoint",
        "logger_tls_period",
        "logger_tls_max_lines",
        "logger_tls_compress",
        "logger_tls_backoff_max",
        "logger_event_type",
        "logger_snapshot_event_type",
        "decorations_top_level",
        "pack_delimiter",
        "schedule_splay_percent",
        "host_identifier",
        "tls_disable_status_log",
        "buffered_log_max",
        "disable_distributed",
    }
)


@dataclass(frozen=True, slots=True)
class AgentFlags:
    """Flags of one agent. Times are in seconds."""

    enroll_tls_endpoint: str = "/api/v1/osquery/enroll"
    config_tls_endpoint: str = "/api/v1/osquery/config"
    logger_tls_endpoint: str = "/api/v1/osquery/log"
    distributed_tls_read_endpoint: str = "/api/v1/osquery/distributed/read"
    distributed_tls_write_endpoint: str = "/api/v1/osquery/distributed/write"

    distributed_interval: float = 10.0
    distributed_tls_max_attempts: int = 3
    disable_distributed: bool = False
    logger_tls_period: float = 10.0
    logger_tls_max_lines: int = 1024
    logger_tls_compress: bool = False
    logger_tls_backoff_max: float = 3600.0
    logger_event_type: bool = True
    logger_snapshot_event_type: bool = False
    decorations_top_level: bool = False
    pack_delimiter: str = "_"
    schedule_splay_percent: int = 10
    host_identifier: str = "hostname"
    tls_disable_status_log: bool = False
    #: osquery keeps up to 1,000,000 lines; the simulator bounds each host's memory lower.
    buffered_log_max: int = 10_000

    config_refresh: float = 60.0
    config_accelerated_refresh: float = 300.0
    config_tls_max_attempts: int = 3
    tls_enroll_max_attempts: int = 12
    tls_enroll_max_interval: float = 600.0
    tls_accept_gzip: bool = False
    disable_reenrollment: bool = False

    #: osquery's hard-coded request timeout.
    request_timeout: float = 16.0
    #: Seconds per unit of osquery's retry sleeps (i*i, step*step): 1 as in osquery;
    #: tests shrink it to exercise retries quickly.
    retry_unit: float = 1.0
    #: Seconds between distributed checks while the server asked to `accelerate`
    #: (osquery's kDistributedAccelerationInterval).
    accelerated_interval: float = 5.0

    def with_options(self, options: Mapping[str, object]) -> tuple[AgentFlags, list[str]]:
        """These flags with the config `options` applied, and the options that were ignored
        (CLI-only, unknown or of the wrong type), as osquery warns about them."""
        changes: dict[str, object] = {}
        ignored: list[str] = []
        fields = {f.name: f for f in dataclasses.fields(self)}
        for name, raw in options.items():
            if name not in RUNTIME_FLAGS or name not in fields:
                ignored.append(name)
                continue
            value = _coerce(raw, type(getattr(self, name)))
            if value is None:
                ignored.append(name)
                continue
            changes[name] = value
        return dataclasses.replace(self, **changes), ignored  # type: ignore[arg-type]

    def as_strings(self) -> dict[str, str]:
        """Values as osquery_flags shows them."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out[f.name] = "true" if value else "false"
            elif isinstance(value, float) and value.is_integer():
                out[f.name] = str(int(value))
            else:
                out[f.name] = str(value)
        out["config_tls_refresh"] = out["config_refresh"]
        out["config_plugin"] = out["logger_plugin"] = out["distributed_plugin"] = "tls"
        return out


def _coerce(raw: object, kind: type) -> object | None:
    """osquery parses option values from strings, booleans or numbers; None if it cannot."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float):
            return bool(raw)
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0", "yes", "no"):
            return raw.lower() in ("true", "1", "yes")
        return None
    if kind is int or kind is float:
        if isinstance(raw, bool):
            return None
        try:
            number = float(raw) if isinstance(raw, str | int | float) else None
        except ValueError:
            return None
        if number is None or number < 0 or number != number:
            return None
        return int(number) if kind is int else number
    if kind is str:
        return raw if isinstance(raw, str) else None
    return None
