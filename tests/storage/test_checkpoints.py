"""SQLite's WAL is checkpointed in the background (fleetwatch.storage.checkpoints), off the
writer's commits, with auto-checkpoint left on as the backstop; never on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from fleetwatch.storage import Database
from fleetwatch.storage.checkpoints import Checkpointer
from fleetwatch.storage.schema import teams

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _teams(names: list[str], size: int = 0) -> Callable[[Connection], None]:
    def body(conn: Connection) -> None:
        conn.execute(
            insert(teams),
            [{"name": n, "description": "x" * size, "created_at": 0.0} for n in names],
        )

    return body


def _pragma(name: str) -> Callable[[Connection], int]:
    def body(conn: Connection) -> int:
        return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())

    return body


async def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout:g} s: {condition}")
        await asyncio.sleep(0.02)


def _wal(db: Database) -> Path:
    assert db.engine.url.database is not None
    return Path(db.engine.url.database + "-wal")


@sqlite_only
async def test_the_background_checkpoint_copies_what_the_writer_committed(db: Database) -> None:
    await db.run_write(_teams([f"t{n}" for n in range(20)]))  # far below 1,000 pages
    checkpointer = db.checkpointer
    assert checkpointer is not None
    # The writer's commits never reached auto-checkpoint's threshold: a log copied whole
    # was copied by the background checkpoint.
    await _until(
        lambda: (
            checkpointer.last is not None
            and checkpointer.last[1] > 0
            and checkpointer.last[2] == checkpointer.last[1]
        ),
        "copied in the background",
    )
    assert checkpointer.last is not None
    first_log = checkpointer.last[1]
    # ... and the next write starts the log over instead of copying it itself.
    await db.run_write(_teams(["after"]))
    await _until(
        lambda: (
            checkpointer.last is not None
            and 0 < checkpointer.last[2] == checkpointer.last[1] < first_log
        ),
        "a new log, copied",
    )
    assert await db.run_write(_pragma("wal_autocheckpoint")) == 1000  # still the backstop


@sqlite_only
async def test_auto_checkpoint_still_bounds_the_log_without_the_background_one(
    db: Database,
) -> None:
    await db.run_write(_teams(["first"]))
    assert db.checkpointer is not None
    await asyncio.get_running_loop().run_in_executor(None, db.checkpointer.stop)
    page = await db.run_write(_pragma("page_size"))
    for n in range(80):  # ~25 pages each: twice auto-checkpoint's 1,000
        await db.run_write(_teams([f"big{n}"], size=25 * page))
    assert _wal(db).stat().st_size < 1_100 * page


@sqlite_only
async def test_dispose_stops_the_checkpoint_thread(db: Database) -> None:
    await db.run_write(_teams(["a"]))
    checkpointer = db.checkpointer
    assert checkpointer is not None
    await _until(lambda: checkpointer.runs > 0, "run")
    await db.dispose()
    assert checkpointer._thread is None
    runs = checkpointer.runs
    await asyncio.sleep(3 * checkpointer.interval)
    assert checkpointer.runs == runs


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_has_no_checkpointer(db: Database) -> None:
    await db.run_write(_teams(["a"]))
    assert db.checkpointer is None


def test_a_checkpointer_never_started_stops(tmp_path: Path) -> None:
    Checkpointer(tmp_path / "none.db").stop()
