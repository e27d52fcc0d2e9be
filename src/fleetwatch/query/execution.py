"""Running a query specification in the database (SQLite or PostgreSQL), never in Python.

The filter is query-core's SQL translation of the query (`where_clause`); the options say
what comes back: links, documents (EXPAND_CONTENT), a count (COUNT), the top N
(TOP_RESULTS), in `sortTerm` order (SORT), deleted documents too (INCLUDE_DELETED).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.query.snapshot import write_seq
from fleetwatch.query.spec import QuerySpecification
from fleetwatch.query.spec_enums import QueryOption
from fleetwatch.query.sql import order_by_clause, where_clause
from fleetwatch.storage.schema import documents

#: Links per IN (...) when fetching bodies.
_FETCH_CHUNK = 500


def condition(
    spec: QuerySpecification, dialect: str, table: FromClause = documents
) -> ColumnElement[bool]:
    """The WHERE clause of a spec: its query, over live documents unless INCLUDE_DELETED
    (over `table`: the documents, or the index as of a boundary, see `time_travel`)."""
    assert spec.query is not None
    return where_clause(
        spec.query,
        dialect,
        include_deleted=spec.has(QueryOption.INCLUDE_DELETED),
        table=table,
    )


def ordering(spec: QuerySpecification, dialect: str, table: FromClause = documents) -> list[Any]:
    """ORDER BY: the sort terms (with SORT, or GROUP_BY's), then the self link so ties are
    stable."""
    sorted_ = spec.has(QueryOption.SORT) or spec.has(QueryOption.GROUP_BY)
    if sorted_ and spec.sort_term is not None:
        return list(
            order_by_clause(
                spec.sort_term,
                spec.sort_order,
                dialect,
                additional=spec.additional_sort_terms or (),
                table=table,
            )
        )
    return [table.c.self_link]


async def count_matches(
    conn: AsyncConnection, spec: QuerySpecification, dialect: str, table: FromClause = documents
) -> int:
    """How many documents match (COUNT)."""
    value = (
        await conn.execute(
            select(func.count()).select_from(table).where(condition(spec, dialect, table))
        )
    ).scalar()
    return int(value or 0)


def select_matching(
    spec: QuerySpecification,
    dialect: str,
    columns: Sequence[Any],
    table: FromClause = documents,
) -> Select[Any]:
    """SELECT `columns` of the matching rows of `table`, in result order, after `offset`."""
    stmt = (
        select(*columns)
        .select_from(table)
        .where(condition(spec, dialect, table))
        .order_by(*ordering(spec, dialect, table))
    )
    if spec.offset:
        stmt = stmt.offset(spec.offset)
    return stmt


def _select(
    spec: QuerySpecification, dialect: str, expand: bool, table: FromClause = documents
) -> Select[Any]:
    columns: list[Any] = [table.c.self_link]
    if expand:
        columns.append(table.c.body)
    return select_matching(spec, dialect, columns, table)


async def matching_links(
    conn: AsyncConnection,
    spec: QuerySpecification,
    dialect: str,
    limit: int | None = None,
    table: FromClause = documents,
) -> list[str]:
    """The matching self links in result order."""
    stmt = _select(spec, dialect, expand=False, table=table)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [str(row[0]) for row in await conn.execute(stmt)]


async def matching_documents(
    conn: AsyncConnection,
    spec: QuerySpecification,
    dialect: str,
    limit: int | None = None,
    table: FromClause = documents,
) -> tuple[list[str], dict[str, JsonObject]]:
    """The matching self links in result order, and their bodies."""
    stmt = _select(spec, dialect, expand=True, table=table)
    if limit is not None:
        stmt = stmt.limit(limit)
    links: list[str] = []
    bodies: dict[str, JsonObject] = {}
    for link, body in await conn.execute(stmt):
        links.append(str(link))
        bodies[str(link)] = body
    return links, bodies


async def matching_by_write(
    conn: AsyncConnection,
    spec: QuerySpecification,
    dialect: str,
    limit: int | None = None,
    *,
    expand: bool = False,
) -> list[tuple[int, str, JsonObject | None]]:
    """The matching documents (those `matching_links` gives) as (sequence of their last
    write, link, body if `expand`), in sequence order: a stream's snapshot, where each
    document's sequence is the cursor a client resumes after. One statement."""
    stmt = _select(spec, dialect, expand).add_columns(write_seq().label("write_seq"))
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = [
        (int(row.write_seq or 0), str(row.self_link), row.body if expand else None)
        for row in await conn.execute(stmt)
    ]
    rows.sort(key=lambda r: r[0])  # stable: a trimmed write (0) keeps the result order
    return rows


async def fetch_bodies(conn: AsyncConnection, links: Sequence[str]) -> dict[str, JsonObject]:
    """The current bodies of these documents (deleted ones with their DELETE state)."""
    bodies: dict[str, JsonObject] = {}
    for i in range(0, len(links), _FETCH_CHUNK):
        chunk = list(links[i : i + _FETCH_CHUNK])
        result = await conn.execute(
            select(documents.c.self_link, documents.c.body).where(documents.c.self_link.in_(chunk))
        )
        for link, body in result:
            bodies[str(link)] = body
    return bodies


def is_paged(spec: QuerySpecification) -> bool:
    """Whether a one-shot run of `spec` answers in pages (a page set is kept): GROUP_BY,
    or a `resultLimit` without TOP_RESULTS or COUNT."""
    if spec.has(QueryOption.GROUP_BY):
        return True
    return (
        spec.result_limit is not None
        and not spec.has(QueryOption.TOP_RESULTS)
        and not spec.has(QueryOption.COUNT)
    )
