"""A cancelled read stops in the database, on SQLite and PostgreSQL (issue 14)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.storage import Database
from fleetwatch.storage.interruptible import interruptible

ROWS = 10_000_000


def _count_to(n: int) -> str:
    return (
        f"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) "
        "SELECT count(tick(i)) FROM c"
    )


async def test_a_cancelled_read_stops_in_the_database(db: Database) -> None:
    if db.is_sqlite:
        await _sqlite_case(db)
    else:
        await _postgres_case(db)


async def _sqlite_case(db: Database) -> None:
    loop = asyncio.get_running_loop()
    started, release = asyncio.Event(), threading.Event()
    calls = [0]

    def tick(i: int) -> int:
        calls[0] += 1
        if calls[0] == 1:
            loop.call_soon_threadsafe(started.set)
            release.wait(30)  # hold the statement until the caller has been cancelled
        return i

    async with db.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.create_function("tick", 1, tick)
        task = asyncio.ensure_future(interruptible(conn, conn.execute(text(_count_to(ROWS)))))
        await started.wait()
        task.cancel()
        await asyncio.sleep(0)  # the caller handles its cancellation first
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        # stopped within a few rows (one check per 1000 instructions), not ten million
        assert calls[0] < 1000
        # the connection still works, and the stop does not outlive the cancelled call
        assert (await interruptible(conn, conn.execute(text(_count_to(5000))))).scalar() == 5000
        assert (await conn.execute(text(_count_to(5000)))).scalar() == 5000


async def _postgres_case(db: Database) -> None:
    marker = "fleetwatch-interruptible-test"
    slow = text(f"SELECT pg_sleep(600), '{marker}'")

    async def running(conn: AsyncConnection) -> int:
        found = await conn.execute(
            text(
                # executing, not waiting for the client to send something
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND wait_event_type IS DISTINCT FROM 'Client' "
                "AND query LIKE '%' || :m || '%' AND pid <> pg_backend_pid()"
            ),
            {"m": marker},
        )
        return int(found.scalar() or 0)

    async with db.connect() as watcher:
        async with db.connect() as conn:
            task = asyncio.ensure_future(interruptible(conn, conn.execute(slow)))
            while await running(watcher) == 0:  # the statement has reached the server
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # The server cancels the 10-minute statement (pg_cancel_backend acts asynchronously,
        # so it is looked for a few times).
        for _ in range(200):
            if await running(watcher) == 0:
                break
            await asyncio.sleep(0.05)
        assert await running(watcher) == 0
