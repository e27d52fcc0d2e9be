"""The async engine for SQLite (WAL, the embedded default) or PostgreSQL, and migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, make_url, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from fleetwatch.numeric_text import SQLITE_FUNCTION, numeric_value
from fleetwatch.storage import sqlite_functions
from fleetwatch.storage.checkpoints import Checkpointer

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock key held while migrating ("fwmigr").
_MIGRATION_LOCK = 0x66_776D_6967_72
#: PostgreSQL advisory lock key held while a node seeds a new database ("fwstart").
_STARTUP_LOCK = 0x66_7773_7461_7274

T = TypeVar("T")

_log = logging.getLogger(__name__)


class Database:
    """One engine, the dialect it speaks, and the migration entry point."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            # A file database with WAL: readers never block the single writer.
            kwargs["connect_args"] = {"timeout": 30}
            if ":memory:" in url or url.endswith("sqlite+aiosqlite://"):
                raise ValueError("use a file for SQLite: an in-memory database is per connection")
        else:
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            # No pool_pre_ping: `_checked_out` pings, and first refuses a connection left
            # inside a transaction, which the built-in pre-ping fails the request on.
            # An unreachable server must fail a request well within osquery's 16 s client
            # timeout (the defaults wait 60 s to connect and 30 s for a pooled connection).
            kwargs["pool_timeout"] = 5
            kwargs["connect_args"] = {"timeout": 5}
        kwargs["json_serializer"] = _json_dumps
        kwargs["json_deserializer"] = orjson.loads
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine.sync_engine, "checkout", _checked_out)
        self._write_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        #: SQLite: a synchronous engine and its one thread, for `run_write` (made on first use).
        self._sync: tuple[Engine, ThreadPoolExecutor] | None = None
        #: SQLite: the background WAL checkpoints (`fleetwatch.storage.checkpoints`),
        #: started with the writer thread.
        self.checkpointer: Checkpointer | None = None

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (runs on every start)."""
        if self.is_sqlite:
            await self._migrate_sqlite()
            return
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Nodes of a cluster start together: one migrates, the others then find
                # the schema current (two concurrent CREATE TABLEs would fail one node).
                await conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            await conn.run_sync(_upgrade)

    async def _migrate_sqlite(self) -> None:
        # A migration that rebuilds a table drops the old one, and with foreign keys on
        # that DROP deletes (cascades to) every row referring to it. SQLite's procedure:
        # keys off outside any transaction, migrate, check the keys still hold, keys on.
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
            try:
                async with conn.begin():
                    await conn.run_sync(_upgrade)
                    broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
            finally:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Run the block on one node at a time (PostgreSQL shared by a cluster): the first
        start's seeding (admin, enroll secret, built-in labels) must not run twice at once."""
        if self.is_sqlite:
            yield
            return
        async with self.engine.connect() as conn:
            await conn.execute(select(func.pg_advisory_lock(_STARTUP_LOCK)))
            try:
                yield
            finally:
                await conn.execute(select(func.pg_advisory_unlock(_STARTUP_LOCK)))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, committed on success."""
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                yield conn
            return
        # SQLite has one writer at a time. Left to SQLite, concurrent write transactions
        # poll its lock with busy-handler sleeps, and under load some wait for tens of
        # seconds (a fleet of 10,000 hosts enrolling stalled that way); queued here they
        # take turns in order, with no sleeping.
        async with self._sqlite_write_lock(), self.engine.begin() as conn:
            yield conn

    def _sqlite_write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._write_lock is None or self._write_lock[0] is not loop:
            self._write_lock = (loop, asyncio.Lock())  # an asyncio.Lock serves one loop
        return self._write_lock[1]

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autocommit-free; nothing is committed)."""
        async with self.engine.connect() as conn:
            yield conn

    async def run_write(self, fn: Callable[[Connection], T]) -> T:
        """`fn(conn)` (synchronous SQLAlchemy Core) in one write transaction, committed on
        success; for hot write paths that run several statements per transaction.

        On SQLite it runs in one call on a dedicated thread with a synchronous connection, in
        turn with `transaction()`: through aiosqlite every statement, fetch and cursor is its
        own hop between the event loop and the driver's thread (about 16 for a small group
        commit of the document index, 2-5 ms under load). On PostgreSQL it runs on the async
        connection (`run_sync`).
        """
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn)
        engine, thread = self._sync_writer()
        async with self._sqlite_write_lock():
            return await asyncio.get_running_loop().run_in_executor(
                thread, _in_transaction, engine, fn
            )

    def _sync_writer(self) -> tuple[Engine, ThreadPoolExecutor]:
        if self._sync is None:
            engine = create_engine(
                make_url(self.url).set(drivername="sqlite"),
                connect_args={"timeout": 30},
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
                pool_size=1,
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            self._sync = (engine, ThreadPoolExecutor(1, thread_name_prefix="fleetwatch-sqlite"))
            database = make_url(self.url).database
            assert database is not None  # a file: the constructor refuses anything else
            self.checkpointer = Checkpointer(Path(database))
            self.checkpointer.start()
        return self._sync

    async def dispose(self) -> None:
        if self._sync is not None:
            engine, thread = self._sync
            self._sync = None
            loop = asyncio.get_running_loop()
            if self.checkpointer is not None:
                # Joined off the loop: it may be in the middle of a checkpoint.
                await loop.run_in_executor(thread, self.checkpointer.stop)
            # The connection belongs to the writer thread: close it there.
            await loop.run_in_executor(thread, engine.dispose)
            thread.shutdown(wait=True)
        await self.engine.dispose()


def _in_transaction(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return fn(conn)


class JsonText:
    """A JSON value serialized once, bound to JSON columns as it is.

    A document's body goes into two rows (`documents` and `changes`); serializing it once
    for both halves the encoding work of every stored write.
    """

    __slots__ = ("text",)

    def __init__(self, value: Any) -> None:
        self.text = orjson.dumps(value).decode()


def _json_dumps(value: Any) -> str:
    if type(value) is JsonText:
        return value.text
    return orjson.dumps(value).decode()


def _checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Hand out only a live PostgreSQL connection outside any transaction.

    A task cancelled while asyncpg was opening its transaction (a client gone mid-request)
    can return a connection the server still holds in that transaction, unknown to
    SQLAlchemy; its next user failed with "cannot use Connection.transaction() in a manually
    started transaction". Such a connection is discarded (the pool opens another) instead.
    """
    driver = dbapi_conn.driver_connection
    if driver.is_in_transaction():
        _log.warning("discarded a pooled connection that was left inside a transaction")
        raise DisconnectionError("pooled connection left inside a transaction")
    try:
        dbapi_conn.ping()
    except Exception as error:
        # As SQLAlchemy's pre-ping: a dead connection means the server went away, so every
        # pooled connection made before now is stale too.
        raise InvalidatePoolError(f"pre-ping failed: {error}") from error


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Range queries compare numeric-looking strings as numbers; SQLite's own CAST reads
    # '12abc' as 12 and rounds long mantissas its own way, so it calls the matcher's code.
    dbapi_conn.create_function(SQLITE_FUNCTION, 1, numeric_value, deterministic=True)
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    sqlite_functions.register(dbapi_conn)


def alembic_config() -> Config:
    """An Alembic config that needs no alembic.ini: the scripts ship inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(sync_conn: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


__all__ = ["Database", "alembic_config"]
