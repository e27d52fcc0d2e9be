"""Telling "the database could not be reached" from every other database error.

A stopped, restarting or cut-off PostgreSQL surfaces as many exception types (a refused
connect, a connection dropped mid-query, "not yet accepting connections", a pool checkout
timeout), each wrapped by SQLAlchemy. Callers answer those with "retry later" (503), not
with an internal error, because nothing is wrong with the request.
"""

from __future__ import annotations

from asyncpg.exceptions import (
    InsufficientResourcesError,
    OperatorInterventionError,
    PostgresConnectionError,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

_UNREACHABLE = (
    OSError,
    PostgresConnectionError,
    OperatorInterventionError,  # shutting down, starting up
    InsufficientResourcesError,  # too many connections
    PoolTimeout,
    TimeoutError,
)


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
