"""Enroll secrets: the store is the source of truth for every service reading it (a CLI
writing the database, another node), secrets are long enough, old short ones keep working."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from sqlalchemy import insert

from fleetwatch.fleet.errors import Conflict, Invalid
from fleetwatch.fleet.secrets import MIN_SECRET_LENGTH, EnrollSecretService
from fleetwatch.storage import Database
from fleetwatch.storage.schema import enroll_secrets

LONG = "a-long-enough-secret"


async def test_changes_behind_a_running_service_reach_it(db: Database) -> None:
    server, cli = EnrollSecretService(db), EnrollSecretService(db)
    await server.load()
    server.start()
    try:
        await cli.add(LONG)  # as `fleetwatch secret add`: no announcement reaches the server
        assert [s.secret for s in await server.list(None)] == [LONG]  # listings read the store
        await _until(lambda: server.check(LONG) is not None)
        await cli.revoke(LONG)
        assert await server.list(None) == []
        await _until(lambda: server.check(LONG) is None)
    finally:
        await server.stop()


async def test_secrets_have_a_minimum_length(db: Database) -> None:
    service = EnrollSecretService(db)
    await service.load()
    for short in ("x", "a" * (MIN_SECRET_LENGTH - 1), f"  {'b' * (MIN_SECRET_LENGTH - 1)}  "):
        with pytest.raises(Invalid, match=f"at least {MIN_SECRET_LENGTH} characters"):
            await service.add(short)
    assert (await service.add("c" * MIN_SECRET_LENGTH)).secret == "c" * MIN_SECRET_LENGTH
    generated = await service.add()
    assert len(generated.secret) == 48
    with pytest.raises(Conflict):
        await EnrollSecretService(db).add("c" * MIN_SECRET_LENGTH)  # known from the store


async def test_a_stored_short_secret_still_enrolls_with_a_warning(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            insert(enroll_secrets), [{"secret": "old", "team_id": None, "created_at": 1.0}]
        )
    service = EnrollSecretService(db)
    await service.load()
    with caplog.at_level(logging.WARNING, logger="fleetwatch.fleet.secrets"):
        service.start()
    await service.stop()
    assert service.check("old") is not None
    warnings = [r.getMessage() for r in caplog.records]
    assert any("1 enroll secret(s) are shorter than 16" in w for w in warnings)
    assert not any("old" in w.split() for w in warnings)  # the secret itself is not logged


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the running service never saw the change"
        await asyncio.sleep(0.02)
