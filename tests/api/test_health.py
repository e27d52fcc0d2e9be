"""`GET /healthz`: 503 only while a node starts or stops; 200 with `degraded` reasons when
a shared dependency is down (`?strict=true` makes that 503); the change feed's lag.
The database outage case is in tests/osquery/test_routes_outage.py."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetwatch.api.health import HealthProbe
from fleetwatch.app import create_app
from fleetwatch.config import Settings, async_database_url
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.storage import Database
from tests.server import RunningServer, running_server
from tests.services import PostgresServer, RedisServer

_names = itertools.count()


def test_a_ready_node_is_ok(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        reply = client.get("/healthz")
        assert reply.status_code == 200
        body = reply.json()
        assert body["status"] == "ok" and body["degraded"] == []
        assert body["database"] == {"status": "ok"}
        assert body["bus"] == {"mode": "single-node"}
        assert set(body["changes"]) == {"last_seq", "delivered_seq", "lag_seconds"}
        assert client.get("/healthz", params={"strict": "true"}).status_code == 200


async def test_a_starting_node_is_unavailable(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))  # lifespan not run: not ready
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        reply = await client.get("/healthz")
    assert reply.status_code == 503 and reply.json()["status"] == "starting"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: it is killed and restarted."""
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_status(client: httpx.Client, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, object] = client.get("/healthz").json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_redis_unreachable_is_degraded_not_down(
    pg_server: PostgresServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        database_url=pg_server.create_database(f"health{next(_names)}"),
        redis_url=own_redis.url,
        distributed_hold=1.0,
    )
    with running_server(settings) as node, httpx.Client(base_url=node.url) as client:
        body = _wait_status(client, "ok")
        assert body["bus"]["redis"] == "ok"  # type: ignore[index]
        own_redis.kill()
        body = _wait_status(client, "degraded")
        assert body["degraded"] == ["redis unreachable"]
        assert client.get("/healthz").status_code == 200  # stays in the load balancer
        assert client.get("/healthz", params={"strict": "true"}).status_code == 503
        own_redis.restart()
        _wait_status(client, "ok")


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database(f"health{next(_names)}")


async def test_the_feed_lag_counts_from_an_undelivered_commit(pg_url: str) -> None:
    url = pg_url
    db_a = Database(async_database_url(url))
    db_b = Database(async_database_url(url))
    try:
        await db_a.migrate()
        writer, reader = DocumentIndex(db_a), DocumentIndex(db_b)
        reader.order_across_nodes()
        await writer.start()
        await reader.start()
        probe = HealthProbe(db_b, reader)
        assert await probe.database() is None
        assert probe.feed_lag() == 0.0
        await writer.write(Write(Action.PUT, "/docs/x/1", "docs:x", {"a": 1}))
        probe = HealthProbe(db_b, reader)  # a fresh probe: no cached result
        assert await probe.database() is None
        assert probe.feed_lag() == 0.0  # seen now: waiting from now on
        await asyncio.sleep(0.01)
        assert probe.feed_lag() > 0.0  # the same change is still waiting
        await reader.catch_up()
        assert probe.feed_lag() == 0.0
    finally:
        await db_a.dispose()
        await db_b.dispose()
