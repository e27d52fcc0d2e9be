"""Distributed queries: accepting a read reply and answering it, as osquery 5.8+ does.

`accept_work` validates the reply (one bad entry voids all of it), `Answers` collects the
results of one cycle for the single write that follows it (kept until a write succeeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


class WorkRejected(ValueError):
    """The read reply is unusable as a whole; the agent runs none of it."""


@dataclass(frozen=True, slots=True)
class Work:
    """What one read asked for."""

    queries: dict[str, str]
    discovery: dict[str, str]
    accelerate: int | None = None


def accept_work(doc: dict[str, Any]) -> Work:
    """Validate a distributed/read reply like osquery's `Distributed::acceptWork`."""
    queries = doc.get("queries", {})
    if queries is None:
        queries = {}
    if not isinstance(queries, dict):
        raise WorkRejected("Distributed queries are not an object")
    for name, sql in queries.items():
        if not name or not isinstance(sql, str) or not sql:
            raise WorkRejected("Distributed query is not a string")
    discovery = doc.get("discovery", {})
    if discovery is None:
        discovery = {}
    if not isinstance(discovery, dict):
        raise WorkRejected("Distributed discovery queries are not an object")
    for name, sql in discovery.items():
        if not name or not isinstance(sql, str) or not sql:
            raise WorkRejected("Distributed discovery query is not a string")
    accelerate = doc.get("accelerate")
    # A string such as "60" has been ignored since osquery 3.2.3; only an int accelerates.
    if not isinstance(accelerate, int) or isinstance(accelerate, bool):
        accelerate = None
    return Work(dict(queries), dict(discovery), accelerate)


@dataclass(slots=True)
class Answer:
    """One query's outcome: rows (strings), status 0 or 1, message, stats."""

    rows: list[dict[str, str]]
    status: int
    message: str
    stats: dict[str, int]


@dataclass(slots=True)
class Answers:
    """Results waiting for a successful distributed/write."""

    by_name: dict[str, Answer] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def add(self, name: str, answer: Answer) -> None:
        self.by_name[name] = answer

    def body(self, node_key: str) -> bytes:
        """The write request: queries, statuses, messages, stats and the node key."""
        return orjson.dumps(
            {
                "node_key": node_key,
                "queries": {n: a.rows for n, a in self.by_name.items()},
                "statuses": {n: a.status for n, a in self.by_name.items()},
                "messages": {n: a.message for n, a in self.by_name.items()},
                "stats": {n: a.stats for n, a in self.by_name.items()},
            }
        )

    def clear(self) -> dict[str, Answer]:
        sent, self.by_name = self.by_name, {}
        return sent
