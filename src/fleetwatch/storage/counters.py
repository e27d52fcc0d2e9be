"""Monotonic ids for objects that live only as documents (campaigns, saved queries)."""

from __future__ import annotations

import asyncio
import weakref
from functools import partial

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import app_settings

#: One lock per database (an asyncio lock belongs to the loop it was first used on).
_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


async def next_id(db: Database, name: str) -> int:
    """The next id of the named counter (1, 2, ...), unique across processes.

    The counter is locked while it is read and moved on; two nodes creating it at once
    collide on its key, and the loser simply tries again.
    """
    for _ in range(5):
        try:
            return await _next_id(db, f"counter:{name}")
        except IntegrityError:
            continue
    return await _next_id(db, f"counter:{name}")


async def _next_id(db: Database, key: str) -> int:
    lock = _locks.get(db)
    if lock is None:
        lock = _locks[db] = asyncio.Lock()
    async with lock:
        # One synchronous transaction: on SQLite one hop to the writer thread, where each
        # statement through aiosqlite was a hop of its own (about a dozen per id), and under
        # load every hop waits a turn of the event loop (a user's POST /queries/run takes
        # two ids while thousands of agents keep the loop busy).
        return await db.run_write(partial(_take, key=key))


def _take(conn: Connection, key: str) -> int:
    # Write first: the no-op UPDATE takes the row's lock (PostgreSQL) or the database's
    # write lock (SQLite), so the read below sees the latest value and nobody moves it
    # before we commit.
    conn.execute(
        update(app_settings).where(app_settings.c.key == key).values(key=app_settings.c.key)
    )
    row = conn.execute(select(app_settings.c.value).where(app_settings.c.key == key)).first()
    if row is None:
        conn.execute(insert(app_settings), [{"key": key, "value": {"next": 2}}])
        return 1
    value = int(row.value["next"])
    conn.execute(
        update(app_settings).where(app_settings.c.key == key).values(value={"next": value + 1})
    )
    return value
