"""Monotonic ids for objects that live only as documents (campaigns, saved queries)."""

from __future__ import annotations

import asyncio

from sqlalchemy import insert, select, update

from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import app_settings

_lock = asyncio.Lock()


async def next_id(db: Database, name: str) -> int:
    """The next id of the named counter (1, 2, ...), unique across processes."""
    key = f"counter:{name}"
    async with _lock, db.transaction() as conn:
        query = select(app_settings.c.value).where(app_settings.c.key == key)
        if db.dialect == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            value = 1
            await conn.execute(insert(app_settings), [{"key": key, "value": {"next": 2}}])
        else:
            value = int(row.value["next"])
            await conn.execute(
                update(app_settings)
                .where(app_settings.c.key == key)
                .values(value={"next": value + 1})
            )
    return value
