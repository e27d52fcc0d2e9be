"""A host's state as the check-in path holds it in memory, its document's kind and link.

Each host is mirrored in the document index as `fleet:host` at `/fleet/hosts/{id}`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HOST_KIND = "fleet:host"
#: Fleet's rule: a host is online while seen_time + its check-in interval + 60 s is ahead.
ONLINE_BUFFER_S = 60.0


def hash_node_key(node_key: str) -> str:
    """Node keys are 256-bit random values; their SHA-256 is what we store and look up."""
    return hashlib.sha256(node_key.encode()).hexdigest()


def host_link(host_id: int) -> str:
    return f"/fleet/hosts/{host_id}"


def iso(ts: float | None) -> str | None:
    """An RFC 3339 UTC timestamp, as Fleet's API shows times."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class HostState:
    """What the check-in path needs to know about a host, kept in memory."""

    id: int
    node_key_hash: str
    host_identifier: str
    uuid: str
    hostname: str
    platform: str
    team_id: int | None
    enrolled_at: float
    seen_time: float | None
    detail_updated_at: float | None
    distributed_interval: int
    config_tls_refresh: int
    #: When detail queries are next due (0: now). Jittered so hosts spread out.
    detail_due_at: float = 0.0
    #: The status last written to the host's document, to report transitions once.
    reported_status: str = "offline"
    labels: list[dict[str, Any]] = field(default_factory=list)


def is_current(state: HostState | None, body: Mapping[str, Any]) -> bool:
    """Whether a host document shows exactly what memory holds: this node's own write
    (its times match to the microsecond), so there is no row to re-read. Any doubt (a
    re-enrolment elsewhere has another seen_time) answers False."""
    return (
        state is not None
        and body.get("seen_time") == iso(state.seen_time)
        and body.get("detail_updated_at") == iso(state.detail_updated_at)
        and body.get("team_id") == state.team_id
        and body.get("hostname") == state.hostname
        and body.get("host_identifier") == state.host_identifier
    )


def state_from_row(m: Any) -> HostState:
    return HostState(
        id=int(m["id"]),
        node_key_hash=m["node_key_hash"],
        host_identifier=m["host_identifier"],
        uuid=m["uuid"],
        hostname=m["hostname"],
        platform=m["platform"],
        team_id=m["team_id"],
        enrolled_at=float(m["enrolled_at"]),
        seen_time=m["seen_time"],
        detail_updated_at=m["detail_updated_at"],
        distributed_interval=int(m["distributed_interval"]),
        config_tls_refresh=int(m["config_tls_refresh"]),
    )
