"""Reads that stop in the database when whoever awaits them is cancelled.

Cancelling a task that awaits a statement does not stop the statement by itself on SQLite:
aiosqlite runs it on the driver's thread to the end, and SQLAlchemy, closing the connection
of the cancelled call, waits for that (a direct query task whose client had left kept the
database busy for as long as the query took: issue 14). `interruptible` runs the work in a
task of its own and, when the caller is cancelled (client gone, timeout), stops it in the
database before passing the cancellation on: on SQLite a progress handler aborts the running
statement, and any later one, within `PROGRESS_STEPS` virtual machine instructions; on
PostgreSQL `pg_cancel_backend` cancels the statement of the work's server process, then the
work fails at once (cancelling asyncpg's call alone drops the connection, but the server
process carries on with the statement). No new statement of the work starts once stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")

#: SQLite virtual machine instructions between two checks of the stop flag.
PROGRESS_STEPS = 1000


class _Stop:
    """The SQLite progress handler: non-zero aborts the statement (only while the work runs)."""

    def __init__(self) -> None:
        self.requested = False
        self.active = True

    def __call__(self) -> int:
        return 1 if self.requested and self.active else 0

    def before_statement(self, *_: Any) -> None:
        """SQLAlchemy's before_cursor_execute: no new statement once stopped."""
        if self.requested and self.active:
            raise Stopped("the query was stopped: its caller was cancelled")


class Stopped(Exception):
    """Raised in place of a statement of work whose caller was cancelled."""


async def interruptible(conn: AsyncConnection, work: Awaitable[T]) -> T:
    """Await `work` (statements on `conn`); if the caller is cancelled, stop them first."""
    sqlite = conn.dialect.name == "sqlite"
    stop = _Stop()
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if sqlite:
        await driver.set_progress_handler(stop, PROGRESS_STEPS)
    sync_conn = conn.sync_connection
    assert sync_conn is not None
    event.listen(sync_conn, "before_cursor_execute", stop.before_statement)
    child = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(child)
    except asyncio.CancelledError:
        stop.requested = True
        if not sqlite:
            await _cancel_backend(conn, driver.get_server_pid())
        # Wait for the work to end (its statement fails at once), so that no statement
        # outlives the caller; its error is of no interest: the caller was cancelled.
        try:
            await asyncio.wait([child])
        except asyncio.CancelledError:  # cancelled again (shutting down): stop waiting
            child.cancel()
            raise
        if not child.cancelled():
            child.exception()
        raise
    finally:
        # Inert from now on, even where it cannot be removed (a closed connection).
        stop.active = False
        event.remove(sync_conn, "before_cursor_execute", stop.before_statement)
        if sqlite and not child.cancelled():
            with contextlib.suppress(Exception):
                await driver.set_progress_handler(None, 0)


async def _cancel_backend(conn: AsyncConnection, pid: int) -> None:
    """Cancel the running statement of PostgreSQL server process `pid` (best effort: without
    a connection to send it, the work runs to its end)."""
    with contextlib.suppress(Exception):
        async with conn.engine.connect() as other:
            await other.execute(select(func.pg_cancel_backend(pid)))


__all__ = ["PROGRESS_STEPS", "Stopped", "interruptible"]
