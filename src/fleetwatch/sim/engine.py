"""Running osquery SQL for a simulated host, for real, in SQLite (osquery's SQL dialect).

One in-memory SQLite database per OS release holds the shared tables (software, groups,
os_version, ...) and one copy of every per-host table. Before a query runs, the per-host
tables it names are refilled with the asking host's rows unless they already hold them, so
10,000 hosts cost a few databases instead of 10,000. The user's SQL runs read-only under an
authorizer, with a time limit that stands in for osquery's watchdog.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass

from fleetwatch.sim.inventory import HostInventory
from fleetwatch.sim.platforms import Platform, Variant
from fleetwatch.sim.schemas import tables_for
from fleetwatch.sim.templates import template_rows

#: Seconds a query may run before it is interrupted (osquery's watchdog would kill it).
DEFAULT_QUERY_TIME_LIMIT = 5.0

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_READ_ONLY_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "function_list", "pragma_list"}
)
_ALLOWED = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows with every value a string (as osquery sends them), or the SQLite error text."""

    rows: list[dict[str, str]]
    error: str | None = None
    #: How long loading and running took, for the distributed write's `stats`.
    wall_time_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def text(value: object) -> str:
    """A column value as osquery renders it in a row: NULL is the empty string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _authorize(
    action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
) -> int:
    if action in _ALLOWED:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and arg1 in _READ_ONLY_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class ReleaseDatabase:
    """The SQLite database of one OS release; runs queries on behalf of its hosts."""

    def __init__(
        self,
        platform: Platform,
        variant: Variant,
        time_limit: float = DEFAULT_QUERY_TIME_LIMIT,
    ) -> None:
        self.platform = platform
        self.variant = variant
        self.time_limit = time_limit
        self._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._per_host: dict[str, str] = {}  # table -> INSERT statement
        self._loaded: dict[str, tuple[object, ...]] = {}
        self._deadline = 0.0
        for schema in tables_for(platform.family):
            self._conn.execute(schema.create_sql())
            if schema.per_host:
                self._per_host[schema.name] = schema.insert_sql()
            else:
                rows = template_rows(platform, variant, schema.name)
                self._conn.executemany(schema.insert_sql(), rows)
        self._conn.set_progress_handler(self._progress, 20_000)

    @property
    def table_names(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _progress(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _load(self, host: HostInventory, sql: str, now: float) -> None:
        names = {m.lower() for m in _IDENTIFIER.findall(sql)}
        for table, insert in self._per_host.items():
            if table not in names:
                continue
            key = host.cache_key(table, now)
            if self._loaded.get(table) == key:
                continue
            self._conn.execute(f'DELETE FROM "{table}"')
            self._conn.executemany(insert, host.rows(table, now))
            self._loaded[table] = key

    def query(self, host: HostInventory, sql: str, now: float | None = None) -> QueryResult:
        """Run `sql` against `host`'s tables. Errors come back as osquery reports them."""
        now = time.time() if now is None else now
        started = time.monotonic()
        self._deadline = started + 3600.0  # loading is ours; only the user's SQL is limited
        self._load(host, sql, now)
        self._deadline = time.monotonic() + self.time_limit
        self._conn.set_authorizer(_authorize)
        try:
            cursor = self._conn.execute(sql)
            names = [d[0] for d in cursor.description or ()]
            rows = [dict(zip(names, map(text, values), strict=True)) for values in cursor]
        except (sqlite3.Error, sqlite3.Warning) as exc:
            message = str(exc)
            if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
                message = "only one statement can run at a time"
            return QueryResult([], message, _elapsed_ms(started))
        except OverflowError as exc:  # an integer too large for SQLite in the SQL itself
            return QueryResult([], str(exc), _elapsed_ms(started))
        finally:
            self._conn.set_authorizer(None)
        return QueryResult(rows, None, _elapsed_ms(started))

    def close(self) -> None:
        self._conn.close()


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class Engines:
    """One `ReleaseDatabase` per OS release, made on first use; shared by a fleet's hosts."""

    def __init__(self, time_limit: float = DEFAULT_QUERY_TIME_LIMIT) -> None:
        self.time_limit = time_limit
        self._dbs: dict[str, ReleaseDatabase] = {}

    def for_host(self, host: HostInventory) -> ReleaseDatabase:
        variant = host.profile.variant
        db = self._dbs.get(variant.key)
        if db is None:
            db = ReleaseDatabase(host.profile.platform, variant, self.time_limit)
            self._dbs[variant.key] = db
        return db

    def query(self, host: HostInventory, sql: str, now: float | None = None) -> QueryResult:
        """Run `sql` for `host` in its release's database."""
        return self.for_host(host).query(host, sql, now)

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
