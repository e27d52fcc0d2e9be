"""distributed/read and distributed/write: which queries a host gets, and where answers go.

Query sources (detail queries here; label queries and live query campaigns elsewhere) say,
from memory and without I/O, which queries a host should run now, and ingest the answers.
A query stays offered on every read until its answer arrives, so a reply lost to a timeout
costs nothing. With nothing to offer, a read is held up to `distributed_hold` seconds and
answered the moment a source wakes the host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.dispatch.holds import hold_for

log = logging.getLogger(__name__)

#: Fleet's discovery query for every query: makes old and new osquery behave the same.
ALWAYS_TRUE = "SELECT 1"
#: Seconds of accelerated (5 s) check-ins asked for while a new host's details are pending.
ACCELERATE_S = 10


@dataclass
class DistributedResult:
    """One query's answer from one host, as osquery wrote it."""

    name: str
    rows: list[dict[str, str]]
    status: int
    message: str
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status != 0


class DispatchedHost(Protocol):
    """What dispatch reads of a host (the fleet's `HostState` is one): its id for holds and
    wake-ups, and its check-in interval."""

    @property
    def id(self) -> int: ...

    @property
    def distributed_interval(self) -> int: ...


H = TypeVar("H", bound=DispatchedHost)
H_contra = TypeVar("H_contra", bound=DispatchedHost, contravariant=True)


class QuerySource(Protocol[H_contra]):
    """Something that sends distributed queries to hosts and takes their answers."""

    #: The query-name prefix this source owns, e.g. `fleet_detail_query_`.
    prefix: str

    def queries_for(self, host: H_contra, now: float) -> dict[str, str]:
        """Queries (full name -> SQL) the host should run now. Must not do I/O."""
        ...

    async def ingest(self, host: H_contra, results: list[DistributedResult]) -> None:
        """Take the answers to this source's queries from one write."""
        ...


class WriteError(Exception):
    """A distributed/write body that cannot be understood (answered 400 with the reason)."""


class DistributedService(Generic[H]):
    """Assembles distributed/read answers and dispatches distributed/write results.

    Generic in the host type so that dispatch sits below the fleet that defines hosts.
    """

    def __init__(self, settings: Settings, wakeups: HostWakeups) -> None:
        self.settings = settings
        self.wakeups = wakeups
        self._sources: list[QuerySource[H]] = []
        #: Called with every write's parsed results (ops hook: metrics).
        self.on_write: Callable[[list[DistributedResult]], None] | None = None

    def register(self, source: QuerySource[H]) -> None:
        self._sources.append(source)

    def pending(self, host: H, now: float) -> dict[str, str]:
        queries: dict[str, str] = {}
        for source in self._sources:
            queries.update(source.queries_for(host, now))
        return queries

    async def read(
        self,
        host: H,
        now: float,
        *,
        needs_accelerate: bool,
        when_gone: Callable[[Callable[[], None]], None] | None = None,
    ) -> dict[str, Any]:
        """The distributed/read answer, held up to the configured hold while nothing is due;
        a hold ends early through `when_gone` (handed a callback: the agent went away)."""
        queries = self.pending(host, now)
        # Spread by the host's slot in its check-in cycle: reads that arrive together (after
        # a fleet-wide campaign woke them all) must not expire together (dispatch/holds.py).
        interval = host.distributed_interval or self.settings.distributed_interval
        hold = hold_for(host.id, now, self.settings.distributed_hold, interval)
        if not queries and hold > 0 and not needs_accelerate:
            if await self.wakeups.wait(host.id, hold, when_gone):
                queries = self.pending(host, time.time())
        response: dict[str, Any] = {
            "queries": queries,
            "discovery": {name: ALWAYS_TRUE for name in queries},
        }
        if needs_accelerate:
            response["accelerate"] = ACCELERATE_S
        return response

    async def write(self, host: H, payload: Mapping[str, Any]) -> int:
        """Dispatch one write's results to their sources; returns how many were taken.

        Results for names no source owns (never sent, or from another server) are ignored.
        """
        results = parse_write(payload)
        if self.on_write is not None:
            self.on_write(results)
        taken = 0
        for source in self._sources:
            mine = [r for r in results if r.name.startswith(source.prefix)]
            if mine:
                await source.ingest(host, mine)
                taken += len(mine)
        if taken < len(results):
            log.debug("host %s wrote %d results for unknown queries", host.id, len(results) - taken)
        return taken


def _as_status(name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise WriteError(f"statuses.{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # osquery before 3.0 sent statuses as strings
    raise WriteError(f"statuses.{name} must be an integer")


def _as_rows(name: str, value: Any) -> list[dict[str, str]]:
    if value is None or value == "":
        return []  # osquery 1.8 sent "" for an empty result
    if not isinstance(value, list):
        raise WriteError(f"queries.{name} must be a list of row objects")
    rows = []
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise WriteError(f"queries.{name}[{i}] must be an object of column to value")
        rows.append({str(k): v if isinstance(v, str) else _stringify(v) for k, v in row.items()})
    return rows


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _as_map(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WriteError(f"{key} must be an object keyed by query name")
    return value


def parse_write(payload: Mapping[str, Any]) -> list[DistributedResult]:
    """The results of a distributed/write body (`queries`, `statuses`, `messages`, `stats`)."""
    queries = _as_map(payload, "queries")
    statuses = _as_map(payload, "statuses")
    messages = _as_map(payload, "messages")
    stats = _as_map(payload, "stats")
    results = []
    for name in list(queries) + [n for n in statuses if n not in queries]:
        message = messages.get(name)
        stat = stats.get(name)
        results.append(
            DistributedResult(
                name=str(name),
                rows=_as_rows(name, queries.get(name)),
                status=_as_status(name, statuses.get(name)),
                message=message if isinstance(message, str) else "",
                stats=dict(stat) if isinstance(stat, Mapping) else {},
            )
        )
    return results
