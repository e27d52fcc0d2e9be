"""Counters of what a simulated host did, and what it received and sent (bounded history)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReceivedQuery:
    """A distributed query as a read delivered it."""

    name: str
    sql: str
    discovery: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class SentResult:
    """A distributed query's answer as a successful write delivered it."""

    name: str
    status: int
    rows: list[dict[str, str]]
    message: str
    sent_at: float


@dataclass(slots=True)
class HostStats:
    """Requests by endpoint kind (enroll, config, log, distributed_read, distributed_write),
    failures by kind, and protocol events."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    enrollments: int = 0
    node_invalid: int = 0
    config_loads: int = 0
    result_lines_sent: int = 0
    status_lines_sent: int = 0
    queries_answered: int = 0
    loop_crashes: int = 0
    last_error: str = ""

    def failed(self, kind: str, message: str) -> None:
        self.errors[kind] += 1
        self.last_error = f"{kind}: {message}"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())


@dataclass(slots=True)
class FleetTotals:
    """Sums over a fleet's hosts at one moment."""

    hosts: int = 0
    enrolled: int = 0
    online: int = 0
    requests: int = 0
    errors: int = 0
    enrollments: int = 0
    node_invalid: int = 0
    queries_answered: int = 0
    result_lines_sent: int = 0
    loop_crashes: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
