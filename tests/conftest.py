"""Shared fixtures: real PostgreSQL and Redis servers, a database per test on either backend,
a live server and a client signed in to it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.index import DocumentIndex
from fleetwatch.storage import Database
from tests.server import RunningServer, running_server
from tests.services import PostgresServer, RedisServer

BACKENDS = ["sqlite", "postgresql"]
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; each test gets its own database in it.

    There is no skip when PostgreSQL is missing: the test command installs it, and a missing
    server is a failure (in CI and elsewhere).
    """
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the session (`redis_url` empties it per test); missing Redis fails."""
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database, as a user would pass to --database-url."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleetwatch.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"t{next(_db_counter)}")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated database on the parametrised backend."""
    from fleetwatch.config import async_database_url

    database = Database(async_database_url(database_url))
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def index(db: Database) -> DocumentIndex:
    """A document index over the test database."""
    doc_index = DocumentIndex(db)
    await doc_index.start()
    return doc_index


@pytest.fixture
def server_settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a test server on a free port, on the parametrised backend."""
    return Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        database_url=database_url,
        enroll_secret="test-enroll-secret",
        admin_email="admin@example.com",
        admin_password="admin-password-1",
        distributed_hold=1.0,
        seen_flush_interval=0.2,
    )


@pytest.fixture
def live_server(server_settings: Settings) -> Iterator[RunningServer]:
    """A real server over loopback (plain HTTP), on SQLite and on PostgreSQL."""
    with running_server(server_settings) as server:
        yield server


def login(
    server: RunningServer, email: str = "admin@example.com", password: str = "admin-password-1"
) -> str:
    """A bearer token for the given user (the settings' admin by default)."""
    reply = httpx.post(
        f"{server.url}/api/v1/fleet/login", json={"email": email, "password": password}
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    return token


@pytest.fixture
def admin_token(live_server: RunningServer) -> str:
    """A bearer token of the admin created from the test settings."""
    return login(live_server)


@pytest.fixture
async def api(live_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """An async client of the live server, signed in as the admin of the test settings."""
    settings = live_server.settings
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        admin = {"email": settings.admin_email, "password": settings.admin_password}
        token = (await client.post("/api/v1/fleet/login", json=admin)).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client
