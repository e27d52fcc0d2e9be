"""Running a query specification in the database (SQLite or PostgreSQL), never in Python.

The filter is query-core's SQL translation of the query (`where_clause`); the options say
what comes back: links, documents (EXPAND_CONTENT), a count (COUNT), the top N
(TOP_RESULTS), in `sortTerm` order (SORT), deleted documents too (INCLUDE_DELETED).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.query.spec import QueryOption, QuerySpecification
from fleetwatch.query.sql import order_by_clause, where_clause
from fleetwatch.storage.schema import documents

#: Links per IN (...) when fetching bodies.
_FETCH_CHUNK = 500


def condition(spec: QuerySpecification, dialect: str) -> ColumnElement[bool]:
    """The WHERE clause of a spec: its query, over live documents unless INCLUDE_DELETED."""
    assert spec.query is not None
    return where_clause(spec.query, dialect, include_deleted=spec.has(QueryOption.INCLUDE_DELETED))


def ordering(spec: QuerySpecification, dialect: str) -> list[Any]:
    """ORDER BY: the sort terms (with SORT), then the self link so ties are stable."""
    if spec.has(QueryOption.SORT) and spec.sort_term is not None:
        return list(
            order_by_clause(
                spec.sort_term,
                spec.sort_order,
                dialect,
                additional=spec.additional_sort_terms or (),
            )
        )
    return [documents.c.self_link]


async def count_matches(conn: AsyncConnection, spec: QuerySpecification, dialect: str) -> int:
    """How many documents match (COUNT)."""
    value = (
        await conn.execute(
            select(func.count()).select_from(documents).where(condition(spec, dialect))
        )
    ).scalar()
    return int(value or 0)


def _select(spec: QuerySpecification, dialect: str, expand: bool) -> Select[Any]:
    columns: list[Any] = [documents.c.self_link]
    if expand:
        columns.append(documents.c.body)
    stmt = select(*columns).where(condition(spec, dialect)).order_by(*ordering(spec, dialect))
    if spec.offset:
        stmt = stmt.offset(spec.offset)
    return stmt


async def matching_links(
    conn: AsyncConnection, spec: QuerySpecification, dialect: str, limit: int | None = None
) -> list[str]:
    """The matching self links in result order."""
    stmt = _select(spec, dialect, expand=False)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [str(row[0]) for row in await conn.execute(stmt)]


async def matching_documents(
    conn: AsyncConnection, spec: QuerySpecification, dialect: str, limit: int | None = None
) -> tuple[list[str], dict[str, JsonObject]]:
    """The matching self links in result order, and their bodies."""
    stmt = _select(spec, dialect, expand=True)
    if limit is not None:
        stmt = stmt.limit(limit)
    links: list[str] = []
    bodies: dict[str, JsonObject] = {}
    for link, body in await conn.execute(stmt):
        links.append(str(link))
        bodies[str(link)] = body
    return links, bodies


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


async def run_results(
    conn: AsyncConnection, spec: QuerySpecification, dialect: str
) -> tuple[JsonObject, list[str] | None]:
    """The `results` of a one-shot query, and the full link list when it is to be paged.

    Paging (resultLimit without TOP_RESULTS): the results carry no links, as in Xenon; the
    caller keeps the returned link list as the snapshot the pages are cut from.
    """
    if spec.has(QueryOption.COUNT):
        return {
            "documentLinks": [],
            "documentCount": await count_matches(conn, spec, dialect),
        }, None
    expand = spec.has(QueryOption.EXPAND_CONTENT)
    top = spec.has(QueryOption.TOP_RESULTS)
    if spec.result_limit is not None and not top:
        links = await matching_links(conn, spec, dialect)
        return {"documentLinks": [], "documentCount": len(links)}, links
    limit = spec.result_limit if top else None
    if expand:
        links, bodies = await matching_documents(conn, spec, dialect, limit)
        return {"documentLinks": links, "documents": bodies, "documentCount": len(links)}, None
    links = await matching_links(conn, spec, dialect, limit)
    return {"documentLinks": links, "documentCount": len(links)}, None
