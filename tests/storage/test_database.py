"""Database.run_write: a synchronous transaction body, committed on success, rolled back on
error, taking turns with `transaction()` (on SQLite it runs on the writer thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
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


# asyncpg's pool only: SQLite has no server-side transaction state to leave behind.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_pooled_connection_left_inside_a_transaction_is_replaced(db: Database) -> None:
    """A task cancelled while asyncpg opened its transaction can hand the pool a connection
    the server still holds in a transaction; the next checkout must not fail on it (it did,
    with "cannot use Connection.transaction() in a manually started transaction")."""
    async with db.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        # What the cancelled task leaves behind: BEGIN sent behind the adapter's back.
        await driver.execute("BEGIN")
        assert driver.is_in_transaction()
    for _ in range(3):
        assert await _team_names(db) == []
    async with db.transaction() as conn:
        await conn.execute(insert(teams), [{"name": "c", "description": "", "created_at": 0.0}])
    assert await _team_names(db) == ["c"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_pooled_connections_the_server_dropped_are_replaced(db: Database) -> None:
    """The checkout ping still does pre-ping's work: connections the server closed (as on a
    restart) are replaced, and the request that finds them succeeds."""
    async with db.connect() as first, db.connect() as second:
        pids = [
            (await conn.execute(select(func.pg_backend_pid()))).scalar_one()
            for conn in (first, second)
        ]
    # Both are back in the pool; the server now ends them, as a restart would (from a
    # connection of its own, outside the pool).
    dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    killer = await asyncpg.connect(dsn)
    try:
        for pid in pids:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    for _ in range(3):
        assert await _team_names(db) == []
