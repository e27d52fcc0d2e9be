"""TIME_SNAPSHOT and INCLUDE_ALL_VERSIONS: which rows a one-shot query reads.

A query normally reads the `documents` table. With TIME_SNAPSHOT it reads the index as it
was after the last change written at or before `timeSnapshotBoundaryMicros` (Xenon: "the
latest version of each document as of the boundary"; deleted by then: absent unless
INCLUDE_DELETED). With INCLUDE_ALL_VERSIONS it reads every retained version, deleted ones
included, and each result link names its version (`link?documentVersion=N`, Xenon's
`UriUtils.buildPathWithVersion`). Both together: every retained version written by the
boundary. The history is the change log (see `fleetwatch.index.history`): a boundary older
than what it retains answers 400 saying how far back it goes.

`snapshot_source` is the reusable part: the table of the documents as of a boundary and the
sequence it stands for, for any reader (a continuous task starting at a boundary, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import FromClause
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.history import (
    HistoryTrimmed,
    all_versions,
    boundary_seq,
    state_at,
    unique_versions,
)
from fleetwatch.query import execution
from fleetwatch.query.spec import QuerySpecError, QuerySpecification
from fleetwatch.query.spec_enums import QueryOption
from fleetwatch.storage.schema import documents

#: Xenon's `ServiceDocument.FIELD_NAME_VERSION` as a link's query parameter.
VERSION_PARAM = "documentVersion"


@dataclass(frozen=True, slots=True)
class Source:
    """The rows a query reads: a table like `documents`, and what it stands for."""

    table: FromClause
    #: The change-log sequence the rows are as of (TIME_SNAPSHOT), else None (now).
    as_of_seq: int | None = None
    #: Rows are versions: links carry `?documentVersion=N`.
    versions: bool = False


CURRENT = Source(documents)


async def snapshot_source(conn: AsyncConnection, boundary_micros: int) -> Source:
    """The documents as of `boundary_micros`: latest version at or before it (read in
    `conn`'s snapshot). QuerySpecError when the change log no longer goes back that far."""
    try:
        seq = await boundary_seq(conn, boundary_micros)
    except HistoryTrimmed as exc:
        raise QuerySpecError(
            f"querySpec.timeSnapshotBoundaryMicros: {exc}; send a boundary at or after "
            f"{exc.reach_micros} (the change log keeps change_retention seconds of history)"
        ) from None
    return Source(state_at(seq), as_of_seq=seq)


async def source_for(conn: AsyncConnection, spec: QuerySpecification) -> Source:
    """The rows `spec` reads, given its TIME_SNAPSHOT and INCLUDE_ALL_VERSIONS options."""
    boundary = spec.time_snapshot_boundary_micros
    if not spec.has(QueryOption.TIME_SNAPSHOT):
        boundary = None
    as_of = None if boundary is None else await snapshot_source(conn, boundary)
    if spec.has(QueryOption.INCLUDE_ALL_VERSIONS):
        seq = None if as_of is None else as_of.as_of_seq
        return Source(all_versions(seq), as_of_seq=seq, versions=True)
    if as_of is not None:
        return as_of
    return CURRENT


def version_link(link: str, version: int) -> str:
    """`link?documentVersion=N`."""
    return f"{link}?{VERSION_PARAM}={version}"


def split_version_link(entry: str) -> tuple[str, int] | None:
    """(link, version) of a `version_link`, or None for a plain link."""
    link, sep, param = entry.rpartition(f"?{VERSION_PARAM}=")
    if not sep or not param.isdigit():
        return None
    return link, int(param)


async def matching_versions(
    conn: AsyncConnection,
    spec: QuerySpecification,
    dialect: str,
    source: Source,
    limit: int | None = None,
    *,
    with_bodies: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """INCLUDE_ALL_VERSIONS: the matching versions' links in result order (a document's
    versions oldest first), and their bodies if asked. Repeats (a version both logged and
    current) are dropped here, so the limit applies after them."""
    table = source.table
    if not spec.has(QueryOption.INCLUDE_DELETED):  # Xenon: deleted versions are included
        spec = spec.model_copy(update={"options": [*spec.options, QueryOption.INCLUDE_DELETED]})
    columns: list[Any] = [table.c.self_link, table.c.version]
    if with_bodies:
        columns.append(table.c.body)
    order = [*execution.ordering(spec, dialect, table), table.c.version]
    stmt = execution.select_matching(spec, dialect, columns, table).order_by(None).order_by(*order)
    rows = list(await conn.execute(stmt))
    pairs = unique_versions([(str(r[0]), int(r[1])) for r in rows])
    if limit is not None:
        pairs = pairs[:limit]
    links = [version_link(link, version) for link, version in pairs]
    bodies: dict[str, Any] = {}
    if with_bodies:
        wanted = set(pairs)
        for row in rows:
            key = (str(row[0]), int(row[1]))
            if key in wanted:
                bodies.setdefault(version_link(*key), row[2])
    return links, bodies
