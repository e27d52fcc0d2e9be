"""Validating live query SQL before it is sent to a single host.

osquery runs SQLite, so SQLite itself judges the syntax (its messages are the ones osquery
would report); sqlglot, in the SQLite dialect, counts the statements, tells a read from a
write and places errors by line and column. Unknown tables and columns are not errors here:
which tables exist depends on each host's platform and extensions.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

MAX_SQL_LENGTH = 100_000
#: Threads that check SQL: parsing 100 KB of SQL takes sqlglot most of a second, which must
#: not stall the event loop (every agent and user waits on it); two at a time bound the CPU
#: one user can take with a burst of long queries, the rest wait their turn.
_CHECKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fleetwatch-sql-check")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_SYNTAX = ("syntax error", "incomplete input", "unrecognized token")
#: SQLite's own refusals of a query nested too deeply (osquery's SQLite refuses it as well).
_TOO_DEEP = ("parser stack overflow", "expression tree is too large")
_NEAR = re.compile(r'near "(.*)": syntax error')
_READ_TYPES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Values)


@dataclass
class InvalidSql(Exception):
    """Why the SQL cannot be run, and where (1-based line and column, when known)."""

    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"{self.message} (line {self.line}, column {self.column})"

    def to_json(self) -> dict[str, object]:
        return {"error": str(self), "line": self.line, "column": self.column}


def _position(sql: str, offset: int) -> tuple[int, int]:
    before = sql[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column


def _sqlite_verdict(sql: str) -> str | None:
    """SQLite's syntax error for this SQL, or None when it parses (names are not checked)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("EXPLAIN " + sql)
    except sqlite3.ProgrammingError:
        return None  # several statements: reported by the statement count
    except sqlite3.Error as exc:
        message = str(exc)
        return message if any(s in message.lower() for s in _SYNTAX + _TOO_DEEP) else None
    finally:
        conn.close()
    return None


def check_live_sql(sql: object) -> str:
    """The SQL, stripped, if it is one read query; InvalidSql naming the problem otherwise."""
    if not isinstance(sql, str):
        raise InvalidSql("the query must be a string of SQL")
    text = sql.strip()
    if len(text) > MAX_SQL_LENGTH:
        raise InvalidSql(f"the query is longer than {MAX_SQL_LENGTH} characters")
    syntax = _sqlite_verdict(text)
    if syntax is not None and any(s in syntax.lower() for s in _TOO_DEEP):
        raise InvalidSql(
            f"the query nests parentheses or expressions too deeply ({syntax}): "
            "SQLite, and so osquery, refuses it; flatten the nesting"
        )
    try:
        statements = [s for s in sqlglot.parse(text, read="sqlite") if s is not None]
        parse_error: tuple[int | None, int | None] | None = None
    except RecursionError:
        # sqlglot parses recursively (about 20 frames a level): a query SQLite accepts
        # can still be too deep for it. Refuse it plainly rather than answer 500.
        raise InvalidSql(
            "the query nests expressions too deeply to check (more than about 40 levels "
            "of parentheses, CASE or NOT): flatten the nesting"
        ) from None
    except (ParseError, TokenError) as exc:
        statements = []
        errors = getattr(exc, "errors", None) or [{}]
        parse_error = (errors[0].get("line"), errors[0].get("col"))
    if not text or (parse_error is None and not statements):
        raise InvalidSql("the query is empty: send one SELECT statement")
    if syntax is not None:
        near = _NEAR.search(syntax)
        if near and near.group(1) and near.group(1) in text:
            line, column = _position(text, text.index(near.group(1)))
        elif parse_error is not None and parse_error[0] is not None:
            line, column = parse_error[0], parse_error[1] or 1
        else:
            line, column = _position(text, len(text))
        raise InvalidSql(f"syntax error: {syntax}", line, column)
    if parse_error is None and len(statements) > 1:
        second = statements[1].sql(dialect="sqlite")[:40]
        raise InvalidSql(
            f"several statements ({len(statements)}): send one query; the second begins {second!r}"
        )
    if parse_error is None:
        statement = statements[0]
        if not isinstance(statement, _READ_TYPES):
            kind = statement.key.upper()
            raise InvalidSql(f"only read queries can run: this is a {kind} statement, not SELECT")
        return text
    # sqlglot could not parse what SQLite accepts: decide by the first keyword.
    first = text.split(None, 1)[0].upper()
    if first not in ("SELECT", "WITH", "VALUES"):
        raise InvalidSql(f"only read queries can run: this begins with {first}, not SELECT")
    return text


async def off_loop(check: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run a SQL check (`check_live_sql`, or a validation made of it) on the checker threads
    and return its result or raise its error, without holding up the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_CHECKERS, lambda: check(*args, **kwargs))


async def check_live_sql_off_loop(sql: object) -> str:
    """`check_live_sql` on the checker threads."""
    return await off_loop(check_live_sql, sql)
