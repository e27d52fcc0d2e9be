"""Database.run_write: a synchronous transaction body, committed on success, rolled back on
error, taking turns with `transaction()` (on SQLite it runs on the writer thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from fleetwatch.storage import Database
from fleetwatch.storage.schema import teams


async def _team_names(db: Database) -> list[str]:
    async with db.connect() as conn:
        return sorted(r[0] for r in await conn.execute(select(teams.c.name)))


async def test_run_write_commits_the_body_and_returns_its_value(db: Database) -> None:
    def body(conn: Connection) -> int:
        conn.execute(insert(teams), [{"name": "a", "description": "", "created_at": 0.0}])
        return int(conn.execute(select(func.count()).select_from(teams)).scalar_one())

    assert await db.run_write(body) == 1
    assert await _team_names(db) == ["a"]


async def test_run_write_rolls_back_when_the_body_raises(db: Database) -> None:
    def body(conn: Connection) -> None:
        conn.execute(insert(teams), [{"name": "b", "description": "", "created_at": 0.0}])
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await db.run_write(body)
    assert await _team_names(db) == []


async def test_run_write_and_async_transactions_take_turns(db: Database) -> None:
    def sync_body(n: int) -> Callable[[Connection], None]:
        def body(conn: Connection) -> None:
            conn.execute(insert(teams), [{"name": f"s{n}", "description": "", "created_at": 0.0}])

        return body

    async def async_write(n: int) -> None:
        async with db.transaction() as conn:
            await conn.execute(
                insert(teams), [{"name": f"a{n}", "description": "", "created_at": 0.0}]
            )

    await asyncio.gather(
        *(db.run_write(sync_body(n)) for n in range(10)),
        *(async_write(n) for n in range(10)),
    )
    assert len(await _team_names(db)) == 20
