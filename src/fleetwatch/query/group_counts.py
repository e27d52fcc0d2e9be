"""Group counts: GROUP_BY + COUNT (fleetwatch's, beyond Xenon), and live with CONTINUOUS.

A one-shot task's results carry `groupCounts` ({group value: documents in it}, groups named
as GROUP_BY names them: `fleetwatch.query.group_by.group_value`) beside `documentCount`. A
continuous one reads them once, in SQL, in the snapshot its stream starts at; from then on
`GroupCounts` follows the change log as the stream's observer: an event moves a document
from the group of its previous version (if that matched) to the group of its new one (if
it still matches). Only the events that move a count reach subscribers, each with the new
counts of the groups it changed (0 for a group it emptied); the query never runs again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import FromClause, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.query import execution
from fleetwatch.query.group_by import WITHOUT_VALUE, group_value
from fleetwatch.query.spec import QuerySpecification
from fleetwatch.query.sql import group_key
from fleetwatch.query.stream_events import Event, EventKind
from fleetwatch.storage.schema import documents

#: The results field (and notification annotation) holding the counts.
GROUP_COUNTS = "groupCounts"


def group_name(kind: object, value: Any) -> str:
    """The group of a `sql.group_key` row, named as `group_value` names a body's."""
    if kind == "s":
        return str(value)
    if kind == "n":
        # a number's text differs by backend (1.50 on PostgreSQL): name it as Python does
        return group_value({"v": json.loads(str(value))}, "v")
    if kind == "t":
        return "true"
    if kind == "f":
        return "false"
    return WITHOUT_VALUE


async def count_groups(
    conn: AsyncConnection,
    spec: QuerySpecification,
    dialect: str,
    table: FromClause = documents,
) -> dict[str, int]:
    """{group value: matching documents in it}, counted in the database."""
    assert spec.group_by_term is not None
    kind, value = group_key(spec.group_by_term.path, dialect, table)
    stmt = (
        select(kind, value, func.count())
        .select_from(table)
        .where(execution.condition(spec, dialect, table))
        .group_by(kind, value)
    )
    counts: dict[str, int] = {}
    for row in await conn.execute(stmt):
        name = group_name(row[0], row[1])
        counts[name] = counts.get(name, 0) + int(row[2])
    return counts


def count_bodies(bodies: Mapping[str, Mapping[str, Any]], name: str) -> dict[str, int]:
    """{group value: entries}, from bodies in memory (INCLUDE_ALL_VERSIONS' versions)."""
    counts: dict[str, int] = {}
    for body in bodies.values():
        group = group_value(body, name)
        counts[group] = counts.get(group, 0) + 1
    return counts


class GroupCounts:
    """A continuous GROUP_BY + COUNT task's live counts (its stream's observer state).

    Following an event costs the same whatever the number of groups: the total is kept in
    step, and only `results` (GET's view, read far less often than events arrive) copies
    every group. With one group per host, say, re-summing and copying every group on each
    event was what the notifications waited for.
    """

    def __init__(self, name: str, counts: Mapping[str, int] | None = None) -> None:
        #: The groupByTerm property.
        self.name = name
        self.counts: dict[str, int] = {}
        self._total = 0
        self.reset(counts or {})

    def reset(self, counts: Mapping[str, int]) -> None:
        """Start from counts read in a snapshot."""
        self.counts = {group: int(n) for group, n in counts.items() if int(n) > 0}
        self._total = sum(self.counts.values())

    @property
    def total(self) -> int:
        return self._total

    def moves(self, event: Event) -> tuple[str | None, str | None] | None:
        """(group left, group joined) by this event, None for either side that is not in
        the results; None when no count moves."""
        change = event.change
        left = None
        if event.before:
            previous = change.prev_body if change.prev_body is not None else change.body
            left = group_value(previous, self.name)
        joined = None
        if event.kind in (EventKind.ADDED, EventKind.UPDATED):
            joined = group_value(change.body, self.name)
        return None if left == joined else (left, joined)

    def apply(self, event: Event) -> JsonObject | None:
        """Follow one new event; the annotation to send, or None when no count moved."""
        moved = self.moves(event)
        if moved is None:
            return None
        left, joined = moved
        counts = self.counts
        if left is not None and left in counts:
            remaining = counts[left] - 1
            if remaining > 0:
                counts[left] = remaining
            else:
                del counts[left]
            self._total -= 1
        if joined is not None:
            counts[joined] = counts.get(joined, 0) + 1
            self._total += 1
        return self._annotation(moved)

    def describe(self, event: Event) -> JsonObject | None:
        """A replayed event's annotation: the current counts of the groups it moved."""
        moved = self.moves(event)
        return None if moved is None else self._annotation(moved)

    def _annotation(self, moved: tuple[str | None, str | None]) -> JsonObject:
        changed = {group: self.counts.get(group, 0) for group in moved if group is not None}
        return {GROUP_COUNTS: changed, "documentCount": self._total}

    def results(self) -> JsonObject:
        """What the task's GET shows: every group's count (a copy: O(groups))."""
        return {"documentLinks": [], "documentCount": self._total, GROUP_COUNTS: dict(self.counts)}

    @classmethod
    def from_results(cls, name: str, results: JsonObject) -> GroupCounts:
        """The counts a saved task's results hold."""
        return cls(name, results.get(GROUP_COUNTS) or {})
