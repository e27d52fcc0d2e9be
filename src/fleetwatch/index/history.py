"""The index as it was: documents as of a past sequence, and every retained version.

The change log holds, for every write, the version written (`body`) and the one before it
(`prev_body`). So the state after sequence S needs only the changes *after* S: a document
not written since S is its current row; one written since is the `prev_body` of its first
change after S (absent when that write created it, or re-created it after a delete). That is
why a boundary is usable exactly while every change after it is retained, and why the cost
grows with the writes since the boundary, not with the size of the index.

`state_at(seq)` and `all_versions(seq)` are SQL derived tables with the columns of
`documents` that queries read (`self_link`, `kind`, `version`, `deleted`, `body`), so the
query translation runs over them unchanged. `boundary_seq` turns a time into the sequence to
use, or raises `HistoryTrimmed` saying how far back the history goes.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import FromClause, and_, false, func, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import KIND, Action, JsonObject
from fleetwatch.storage.schema import changes, documents

#: Rows per IN (...) when fetching bodies by link.
_FETCH_CHUNK = 500


class HistoryTrimmed(Exception):
    """A boundary older than the retained change history."""

    def __init__(self, boundary_micros: int, reach_micros: int) -> None:
        self.boundary_micros = boundary_micros
        self.reach_micros = reach_micros
        super().__init__(
            f"{boundary_micros} ({_iso(boundary_micros)}) is older than the retained change "
            f"history, which goes back to {reach_micros} ({_iso(reach_micros)})"
        )


@dataclass(frozen=True, slots=True)
class HistoryReach:
    """How far back the change log goes: `None` micros when it was never trimmed."""

    first_seq: int
    first_micros: int | None


def _iso(micros: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(micros / 1_000_000, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return "out of range"
    return moment.isoformat().replace("+00:00", "Z")


async def history_reach(conn: AsyncConnection) -> HistoryReach:
    """The oldest retained change, and (if older ones were trimmed) its time."""
    row = (
        await conn.execute(
            select(changes.c.seq, changes.c.time_micros).order_by(changes.c.seq).limit(1)
        )
    ).first()
    if row is None:
        return HistoryReach(0, None)
    first = int(row.seq)
    # Sequences start at 1, so a first sequence above 1 means a trimmed prefix (on
    # PostgreSQL a rolled-back first write also does: the answer then errs on the safe side).
    return HistoryReach(first, None if first <= 1 else int(row.time_micros))


async def boundary_seq(conn: AsyncConnection, micros: int) -> int:
    """The sequence of the last change written at or before `micros` (0: none was).

    Raises HistoryTrimmed when the changes at or before `micros` were trimmed: the state
    then is no longer known."""
    reach = await history_reach(conn)
    if reach.first_micros is not None and micros < reach.first_micros:
        raise HistoryTrimmed(micros, reach.first_micros)
    # One probe of the time index (SQLite's holds the seq too).
    value = (
        await conn.execute(
            select(changes.c.seq)
            .where(changes.c.time_micros <= micros)
            .order_by(changes.c.time_micros.desc(), changes.c.seq.desc())
            .limit(1)
        )
    ).scalar()
    return int(value or 0)


def _changed_after(seq: int) -> FromClause:
    """Per document written after `seq`: its first such change."""
    return (
        select(changes.c.self_link, func.min(changes.c.seq).label("first_seq"))
        .where(changes.c.seq > seq)
        .group_by(changes.c.self_link)
        .subquery("changed_after")
    )


def state_at(seq: int) -> FromClause:
    """Every document as it was right after change `seq` (deleted ones as their DELETE
    state when their current row is it), as a derived table like `documents`."""
    after = _changed_after(seq)
    unchanged = select(
        documents.c.self_link,
        documents.c.kind,
        documents.c.version,
        documents.c.deleted,
        documents.c.body,
    ).where(documents.c.self_link.not_in(select(changes.c.self_link).where(changes.c.seq > seq)))
    # A missing previous version is stored as JSON null, not SQL NULL; every version has a
    # documentKind, so its absence is the test.
    prev_kind = changes.c.prev_body[KIND].as_string()
    earlier = (
        select(
            changes.c.self_link,
            prev_kind.label("kind"),
            (changes.c.version - 1).label("version"),
            false().label("deleted"),
            changes.c.prev_body.label("body"),
        )
        .select_from(changes.join(after, changes.c.seq == after.c.first_seq))
        .where(prev_kind.is_not(None))
    )
    return union_all(unchanged, earlier).subquery("documents_at")


def all_versions(seq: int | None = None) -> FromClause:
    """Every retained version (up to change `seq` when given): the change log's, and each
    document's version at `seq` (or now), which the log may have trimmed. A version held in
    both appears twice: readers drop the repeat (`unique_versions`)."""
    logged = select(
        changes.c.self_link,
        changes.c.kind,
        changes.c.version,
        (changes.c.action == Action.DELETE.value).label("deleted"),
        changes.c.body,
    )
    if seq is not None:
        logged = logged.where(changes.c.seq <= seq)
        current = state_at(seq)
    else:
        current = documents
    latest = select(
        current.c.self_link,
        current.c.kind,
        current.c.version,
        current.c.deleted,
        current.c.body,
    )
    return union_all(logged, latest).subquery("document_versions")


def unique_versions(rows: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """(link, version) pairs with repeats dropped, first occurrence kept, order kept."""
    seen: set[tuple[str, int]] = set()
    out: list[tuple[str, int]] = []
    for row in rows:
        if row not in seen:
            seen.add(row)
            out.append(row)
    return out


async def bodies_at(conn: AsyncConnection, links: Sequence[str], seq: int) -> dict[str, JsonObject]:
    """The bodies of these documents as of change `seq` (absent ones left out)."""
    table = state_at(seq)
    out: dict[str, JsonObject] = {}
    for i in range(0, len(links), _FETCH_CHUNK):
        chunk = list(links[i : i + _FETCH_CHUNK])
        rows = await conn.execute(
            select(table.c.self_link, table.c.body).where(table.c.self_link.in_(chunk))
        )
        for link, body in rows:
            out[str(link)] = body
    return out


async def version_bodies(
    conn: AsyncConnection, versions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], JsonObject]:
    """The bodies of these (link, version) pairs, from the log or the current rows."""
    table = all_versions()
    out: dict[tuple[str, int], JsonObject] = {}
    for i in range(0, len(versions), _FETCH_CHUNK):
        chunk = list(versions[i : i + _FETCH_CHUNK])
        links = sorted({link for link, _ in chunk})
        rows = await conn.execute(
            select(table.c.self_link, table.c.version, table.c.body).where(
                and_(
                    table.c.self_link.in_(links),
                    tuple_(table.c.self_link, table.c.version).in_(chunk),
                )
            )
        )
        for link, version, body in rows:
            out[(str(link), int(version))] = body
    return out


__all__ = [
    "HistoryReach",
    "HistoryTrimmed",
    "all_versions",
    "bodies_at",
    "boundary_seq",
    "history_reach",
    "state_at",
    "unique_versions",
    "version_bodies",
]
