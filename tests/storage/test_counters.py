"""Id counters: unique and gap-free when several processes (here: engines) take ids at once,
including the race to create the counter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from fleetwatch.config import async_database_url
from fleetwatch.storage import Database
from fleetwatch.storage.counters import next_id


async def test_two_nodes_taking_ids_at_once_never_share_one(database_url: str) -> None:
    first = Database(async_database_url(database_url))
    await first.migrate()
    second = Database(async_database_url(database_url))
    try:
        taken = await asyncio.gather(
            *(next_id(db, "campaign") for _ in range(20) for db in (first, second))
        )
        assert sorted(taken) == list(range(1, 41))
        assert await next_id(second, "campaign") == 41
        assert await next_id(first, "saved-query") == 1  # counters are independent
    finally:
        await first.dispose()
        await second.dispose()


async def test_an_id_on_sqlite_is_one_hop_to_the_writer_not_a_statement_each(
    tmp_path: Path,
) -> None:
    """On SQLite the whole transaction runs on the writer thread: no statement of it goes
    through aiosqlite, where each one waits a turn of a busy event loop."""
    db = Database(async_database_url(f"sqlite:///{tmp_path / 'ids.db'}"))
    await db.migrate()
    through_aiosqlite: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        through_aiosqlite.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert [await next_id(db, "campaign") for _ in range(3)] == [1, 2, 3]
        assert through_aiosqlite == []
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
        await db.dispose()
