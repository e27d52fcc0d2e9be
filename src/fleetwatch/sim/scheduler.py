"""Scheduled queries: when each runs next, and differential results like osquery's.

osquery keeps each query's previous result set and logs what was added and removed since
(`counter` 0 for the first full set). Here the previous set is kept compressed: 10,000 hosts
with a `SELECT * FROM processes` schedule would otherwise hold millions of dicts.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass

import orjson

from fleetwatch.sim.agent_config import ScheduledQuery
from fleetwatch.sim.seeding import unit


def row_bytes(row: dict[str, str]) -> bytes:
    """A row's canonical serialized form (sorted keys): equal rows give equal bytes."""
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


@dataclass(slots=True)
class Diff:
    added: list[bytes]
    removed: list[bytes]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def diff_rows(previous: list[bytes], current: list[bytes]) -> Diff:
    """Rows in `current` not in `previous` (added) and the reverse (removed), as multisets."""
    before = Counter(previous)
    after = Counter(current)
    added = list((after - before).elements())
    removed = list((before - after).elements())
    return Diff(sorted(added), sorted(removed))


def splayed_interval(interval: int, percent: int, *seed: object) -> int:
    """osquery's splay: the interval moved by up to `percent` %, fixed per host and query."""
    if percent <= 0 or interval < 2:
        return interval
    spread = interval * min(percent, 100) / 100
    value = interval - spread + 2 * spread * unit(*seed, "splay")
    return max(1, int(round(value)))


def next_run(now: float, every: int) -> float:
    """The next unix time that is a multiple of `every` (osquery aligns to the clock)."""
    return (math.floor(now / every) + 1) * every


class QueryState:
    """What the agent remembers about one scheduled query between runs."""

    __slots__ = ("sql", "every", "due", "counter", "epoch", "_previous")

    def __init__(self, sql: str, every: int, now: float) -> None:
        self.sql = sql
        self.every = every
        self.due = next_run(now, every)
        self.counter = 0
        self.epoch = 0
        self._previous: bytes | None = None

    @property
    def fresh(self) -> bool:
        """No result set recorded yet: the next run logs everything as added."""
        return self._previous is None

    def previous(self) -> list[bytes]:
        if not self._previous:
            return []
        return zlib.decompress(self._previous).split(b"\n")

    def record(self, rows: list[bytes]) -> Diff:
        """Store this run's rows and return the difference to the previous run."""
        first = self.fresh
        diff = diff_rows(self.previous(), rows)
        self._previous = zlib.compress(b"\n".join(sorted(rows)), 1) if rows else b""
        self.counter = 0 if first else self.counter + 1
        return diff


class Schedule:
    """The scheduled queries of one host and their state, rebuilt on every config change
    (state is kept for a query whose name and SQL did not change)."""

    __slots__ = ("queries", "states")

    def __init__(self) -> None:
        self.queries: dict[str, ScheduledQuery] = {}
        self.states: dict[str, QueryState] = {}

    def replace(
        self, queries: dict[str, ScheduledQuery], splay_percent: int, seed: str, now: float
    ) -> None:
        states: dict[str, QueryState] = {}
        for name, query in queries.items():
            every = splayed_interval(query.interval, splay_percent, seed, name)
            old = self.states.get(name)
            if old is not None and old.sql == query.sql and old.every == every:
                states[name] = old
            else:
                states[name] = QueryState(query.sql, every, now)
        self.queries = dict(queries)
        self.states = states

    def next_due(self) -> float | None:
        if not self.states:
            return None
        return min(state.due for state in self.states.values())

    def due(self, now: float) -> list[str]:
        """Names due at `now`, each moved to its next slot."""
        names = []
        for name, state in self.states.items():
            if state.due <= now:
                names.append(name)
                state.due = next_run(now, state.every)
        return names
