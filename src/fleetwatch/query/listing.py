"""Plain listings of live documents, for the domain's list endpoints.

Documents of one kind, or under one link prefix (a range on the primary key, so it uses its
index), optionally narrowed by query terms on body fields (translated by `query.sql`, the one
place that knows SQLite's `json_extract` and PostgreSQL's `->>`), in link order or newest
first, one page at a time, with the total count when asked. Domain modules read documents
through here (or `DocumentIndex.get`) rather than from the `documents` table; several reads
that must agree share one `query.snapshot` connection (`conn=`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.query.spec import Query
from fleetwatch.query.sql import where_clause
from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import documents


class Order(Enum):
    """The order of a listing (the link breaks ties, so pages are stable)."""

    #: By self link.
    LINK = "link"
    #: Last updated first; equal times by link.
    NEWEST = "newest"
    #: Last updated first; equal times by link, descending.
    NEWEST_LINK_DESC = "newest-link-desc"


@dataclass(frozen=True)
class Listing:
    """Which documents, in which order."""

    kind: str | None = None
    #: Only documents whose self link starts with this.
    link_prefix: str | None = None
    #: Terms on body fields (None: no more than kind and prefix).
    where: Query | None = None
    order: Order = Order.LINK
    #: Only documents last written before this time (microseconds since the epoch).
    updated_before: int | None = None


@dataclass
class Page:
    """One page of a listing: (link, body) pairs in order, and the total when counted."""

    documents: list[tuple[str, JsonObject]]
    total: int | None = None

    @property
    def bodies(self) -> list[JsonObject]:
        return [body for _, body in self.documents]


def _condition(listing: Listing, dialect: str) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = [documents.c.deleted.is_(False)]
    if listing.kind is not None:
        conds.append(documents.c.kind == listing.kind)
    if listing.link_prefix is not None:
        # prefix .. prefix + max char: a range on the primary key uses its index.
        conds.append(documents.c.self_link >= listing.link_prefix)
        conds.append(documents.c.self_link < listing.link_prefix + "\uffff")
    if listing.where is not None:
        conds.append(where_clause(listing.where, dialect))
    if listing.updated_before is not None:
        conds.append(documents.c.update_time_micros < listing.updated_before)
    return and_(*conds)


@asynccontextmanager
async def _connection(db: Database, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
    """The caller's connection (a snapshot shared by several reads), else a new one."""
    if conn is not None:
        yield conn
        return
    async with db.connect() as fresh:
        yield fresh


def _ordering(order: Order) -> list[Any]:
    if order is Order.NEWEST:
        return [documents.c.update_time_micros.desc(), documents.c.self_link]
    if order is Order.NEWEST_LINK_DESC:
        return [documents.c.update_time_micros.desc(), documents.c.self_link.desc()]
    return [documents.c.self_link]


async def read_page(
    db: Database,
    listing: Listing,
    *,
    limit: int | None = None,
    offset: int = 0,
    count: bool = False,
    conn: AsyncConnection | None = None,
) -> Page:
    """A page of the listing's live documents (and their total with `count`), read through
    `conn` when given (e.g. one `query.snapshot` for several listings)."""
    where = _condition(listing, db.dialect)
    async with _connection(db, conn) as reader:
        total = None
        if count:
            counted = await reader.execute(select(func.count()).select_from(documents).where(where))
            total = int(counted.scalar_one())
        stmt = (
            select(documents.c.self_link, documents.c.body)
            .where(where)
            .order_by(*_ordering(listing.order))
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        rows = await reader.execute(stmt)
        return Page([(str(r[0]), r[1]) for r in rows], total)


async def read_fields(
    db: Database,
    listing: Listing,
    fields: tuple[str, ...],
    *,
    conn: AsyncConnection | None = None,
) -> list[tuple[str, dict[str, str | None]]]:
    """The listing's live documents as (link, {field: text}) for a few top-level body
    fields, without reading whole bodies (e.g. each result's status, not its rows); no
    fields: just the links."""
    where = _condition(listing, db.dialect)
    columns = [documents.c.body[name].as_string() for name in fields]
    async with _connection(db, conn) as reader:
        rows = await reader.execute(
            select(documents.c.self_link, *columns).where(where).order_by(*_ordering(listing.order))
        )
        return [(str(r[0]), dict(zip(fields, r[1:], strict=True))) for r in rows]
