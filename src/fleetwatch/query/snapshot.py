"""A consistent read of the store together with the change-log sequence it reflects.

`snapshot(db)` yields a connection inside one read transaction and the highest sequence S
visible in it: everything the connection reads is the state after change S and before S+1.
On PostgreSQL that is a REPEATABLE READ transaction (its snapshot is taken at the first
statement, and the index appends changes under a lock, so commit order is sequence order);
on SQLite an explicit read transaction in WAL mode, which sees one database version.

`write_seq()` is the sequence of the write that produced a document row's current version,
the cursor a stream sends with that document in a snapshot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import changes, documents


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[tuple[AsyncConnection, int]]:
    """A read-only connection on one consistent snapshot, and the sequence S it reflects."""
    async with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                seq = await _max_seq(conn)
                yield conn, seq
            return
        # pysqlite only opens transactions before writes; BEGIN makes the reads one snapshot.
        await conn.exec_driver_sql("BEGIN")
        try:
            seq = await _max_seq(conn)
            yield conn, seq
        finally:
            await conn.rollback()


async def _max_seq(conn: AsyncConnection) -> int:
    value = (await conn.execute(select(func.max(changes.c.seq)))).scalar()
    return int(value or 0)


def write_seq() -> ScalarSelect[Any]:
    """The change-log sequence of the write that left each `documents` row as it is (a
    correlated subquery to select next to the row; NULL once that change was trimmed).

    A change row has the time, link and version of the document version it wrote, and the
    log is indexed by time: one index probe per document, inside the caller's one query, so a
    10,000-document snapshot is still one statement (no column to migrate, nothing more to
    write per change).
    """
    return (
        select(func.max(changes.c.seq))
        .where(
            changes.c.time_micros == documents.c.update_time_micros,
            changes.c.self_link == documents.c.self_link,
            changes.c.version == documents.c.version,
        )
        .scalar_subquery()
    )
