"""Id counters: unique and gap-free when several processes (here: engines) take ids at once,
including the race to create the counter."""

from __future__ import annotations

import asyncio

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
