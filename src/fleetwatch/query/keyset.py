"""Keyset pages of the documents under a link prefix: bounded reads in a stable order.

A page is the next `limit` documents after a position, in link order or by a numeric body
field (missing or non-numeric values last, in either direction, the link breaking ties), so
reading a large set page by page costs one bounded query per page and holds one page in
memory. Unlike an offset, a position does not shift when documents are added before it: a
document present for the whole walk is read exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Select, and_, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fleetwatch.index.document import Document
from fleetwatch.index.store import document_from_row
from fleetwatch.query.sql import number_at
from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import documents


@dataclass(frozen=True, slots=True)
class NumberOrder:
    """Order by the numeric body field at `path` (e.g. `("stats", "wall_time_ms")`)."""

    path: tuple[str, ...]
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last document's link and, in a NumberOrder, its value
    (None when it had none: such documents come last)."""

    link: str
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """Documents in order, each with its position (what `after` takes to go on from it)."""

    documents: list[Document]
    positions: list[Position]

    @property
    def end(self) -> Position | None:
        """The position after the last document (None on an empty page)."""
        return self.positions[-1] if self.positions else None


def _under(prefix: str, kind: str | None) -> ColumnElement[bool]:
    link = documents.c.self_link
    clause = and_(
        documents.c.deleted.is_(False),
        # the range lets the primary key find them; the prefix test keeps the answer right
        # whatever the database's collation does with the characters of the bound
        link >= prefix,
        link < prefix + "\uffff",
        func.substr(link, 1, len(prefix)) == prefix,
    )
    if kind is not None:
        # `kind || ''`: checked on the range's rows; an index on kind would have the
        # database read every document of that kind, of every prefix
        clause = and_(clause, documents.c.kind.concat("") == kind)
    return clause


async def read_page(
    db: Database,
    prefix: str,
    *,
    limit: int,
    kind: str | None = None,
    after: Position | None = None,
    offset: int = 0,
    order: NumberOrder | None = None,
) -> Page:
    """The next `limit` documents under `prefix` (of `kind`) after `after`, skipping
    `offset` of them first (for numbered pages; a position is cheaper)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    link = documents.c.self_link
    query: Select[tuple[object, ...]]
    if order is None:
        query = select(documents).where(_under(prefix, kind))
        if after is not None:
            query = query.where(link > after.link)
        query = query.order_by(link).offset(offset).limit(limit)
    else:
        # Sort links and values only, then read the page's bodies: the database's sorter
        # then carries a link and a number per document, not every body.
        value = number_at(order.path, db.dialect)
        keys = select(link.label("page_link"), value.label("sort_value")).where(
            _under(prefix, kind)
        )
        if after is not None:
            keys = keys.where(_after(value, after, order.descending))
        keys = keys.order_by(*_ordering(value, order.descending))
        page = keys.offset(offset).limit(limit).subquery()
        sort_value = page.c.sort_value
        query = (
            select(documents, sort_value)
            .join(page, link == page.c.page_link)
            .order_by(*_ordering(sort_value, order.descending))
        )
    async with db.connect() as conn:
        rows = [r._mapping for r in await conn.execute(query)]
    docs = [document_from_row(r) for r in rows]
    positions = [
        Position(
            r["self_link"],
            None if order is None or r["sort_value"] is None else float(r["sort_value"]),
        )
        for r in rows
    ]
    return Page(docs, positions)


def _ordering(value: ColumnElement[object], descending: bool) -> list[ColumnElement[Any]]:
    """(value IS NULL, value, link): documents without a number last in either direction."""
    return [
        value.is_(None),
        value.desc() if descending else value.asc(),
        documents.c.self_link,
    ]


def _after(value: ColumnElement[object], after: Position, descending: bool) -> ColumnElement[bool]:
    """Rows after `after` in the order (value IS NULL, value, link)."""
    link = documents.c.self_link
    if after.value is None:
        return and_(value.is_(None), link > after.link)
    beyond = value < after.value if descending else value > after.value
    return or_(
        value.is_(None),
        beyond,
        and_(value == after.value, link > after.link),
    )


# --- pages of a group through an expression index --------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class IndexedOrder:
    """Documents of `kind` whose top-level field `group` equals a value, ordered by the
    numeric field at `path`, served by expression indexes made for exactly this order
    (a migration creates them; `index_columns` gives their SQL): one over (group, value
    IS NULL, value, link) for ascending pages and one with the value descending.

    The expressions are written with literal paths, never bound parameters, because a
    database uses an expression index only for the identical expression.
    """

    kind: str
    group: str
    path: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in (self.group, *self.path):
            if not _NAME.match(name):
                raise ValueError(f"field names of an indexed order are identifiers: {name!r}")

    def group_sql(self, dialect: str) -> str:
        if dialect == "postgresql":
            return f"(body ->> '{self.group}')"
        return f"json_extract(body, '$.{self.group}')"

    def value_sql(self, dialect: str) -> str:
        if dialect == "postgresql":
            arrows = "".join(f" -> '{p}'" for p in self.path[:-1])
            node = f"body{arrows} -> '{self.path[-1]}'"
            text = f"body{arrows} ->> '{self.path[-1]}'"
            return (
                f"(CASE WHEN jsonb_typeof({node}) = 'number' THEN ({text})::double precision END)"
            )
        # what the index stores is numbers (or nothing): json_extract gives them as such
        return f"json_extract(body, '$.{'.'.join(self.path)}')"

    def index_columns(self, dialect: str, *, descending: bool) -> str:
        """The column list of the index serving this order in one direction."""
        group, value = self.group_sql(dialect), self.value_sql(dialect)
        if dialect == "postgresql":
            group, value = f"({group})", f"({value})"
        direction = " DESC" if descending else ""
        return f"{group}, ({value} IS NULL), {value}{direction}, self_link"

    def index_where(self) -> str:
        """The partial index's condition: only documents of this kind are indexed."""
        return f"kind = '{self.kind}'"

    def statement(
        self,
        dialect: str,
        group_value: str | int,
        *,
        descending: bool,
        limit: int,
        after: Position | None = None,
        offset: int = 0,
    ) -> list[Select[tuple[object, ...]]]:
        """The statements whose rows, in turn, make the page: one without `after`, else up
        to three index ranges (the rest of the cursor's value, the values beyond it, the
        documents without a value), read in order until the page is full."""
        value: ColumnElement[float] = literal_column(self.value_sql(dialect), Float)
        missing = value.is_(None)
        group: ColumnElement[object] = literal_column(self.group_sql(dialect))
        group_param = str(group_value) if dialect == "postgresql" else group_value
        link = documents.c.self_link
        base = select(documents, value.label("sort_value")).where(
            literal_column(self.index_where()),
            group == group_param,
            documents.c.deleted.is_(False),
        )
        ordering: list[ColumnElement[Any]] = [
            missing,
            value.desc() if descending else value.asc(),
            link,
        ]
        if after is None:
            return [base.order_by(*ordering).offset(offset).limit(limit)]
        if after.value is None:
            ranges = [and_(missing, link > after.link)]
        else:
            beyond = value < after.value if descending else value > after.value
            ranges = [
                and_(~missing, value == after.value, link > after.link),
                and_(~missing, beyond),
                missing,
            ]
        return [base.where(r).order_by(*ordering).limit(limit) for r in ranges]


async def read_indexed_page(
    db: Database,
    order: IndexedOrder,
    group_value: str | int,
    *,
    limit: int,
    descending: bool = False,
    after: Position | None = None,
    offset: int = 0,
) -> Page:
    """Like `read_page` with a NumberOrder, for the documents of one group, read through
    the expression indexes of `order`: a page costs one index range read, however many
    documents the group has (sorting them all per page cost about 20 µs a document)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    rows: list[Any] = []
    statements = order.statement(
        db.dialect, group_value, descending=descending, limit=limit, after=after, offset=offset
    )
    async with db.connect() as conn:
        for statement in statements:
            if len(rows) >= limit:
                break
            result = await conn.execute(statement.limit(limit - len(rows)))
            rows.extend(r._mapping for r in result)
    return Page(
        [document_from_row(r) for r in rows],
        [
            Position(r["self_link"], None if r["sort_value"] is None else float(r["sort_value"]))
            for r in rows
        ],
    )


async def count(db: Database, prefix: str, *, kind: str | None = None) -> int:
    """How many documents are under `prefix` (of `kind`)."""
    query = select(func.count()).select_from(documents).where(_under(prefix, kind))
    async with db.connect() as conn:
        value = (await conn.execute(query)).scalar()
    return int(value or 0)


__all__ = [
    "IndexedOrder",
    "NumberOrder",
    "Page",
    "Position",
    "count",
    "read_indexed_page",
    "read_page",
]
