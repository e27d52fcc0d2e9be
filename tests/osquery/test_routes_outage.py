"""The agent API while PostgreSQL is unreachable: every reply is JSON osquery can parse
(never HTML, never an empty 500), check-ins keep working from memory, writes are refused
with a 503 and `error` (osquery keeps its data and retries), and all recovers on its own.
/healthz says the database is unreachable meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetwatch.config import Settings
from tests.agent import Agent
from tests.server import running_server
from tests.services import PostgresServer


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: it is stopped and started again."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


def _json(reply: httpx.Response) -> dict[str, object]:
    assert reply.headers["content-type"].startswith("application/json"), reply.text
    body = reply.json()
    assert isinstance(body, dict)
    return body


def test_agents_get_json_while_the_database_is_down(own_pg: PostgresServer, tmp_path: Path) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        database_url=own_pg.create_database("outage"),
        enroll_secret="test-enroll-secret",
        admin_email="admin@example.com",
        admin_password="admin-password-1",
        distributed_hold=0.5,
        seen_flush_interval=0.2,
    )
    with running_server(settings) as server, httpx.Client(base_url=server.url) as client:
        agent = Agent(client, "test-enroll-secret", "h1", "u1")
        assert agent.enroll()["node_key"]
        own_pg.halt()
        try:
            health = client.get("/healthz")
            assert health.status_code == 200
            assert "database unreachable" in _json(health)["degraded"]  # type: ignore[operator]
            # check-ins and config come from memory
            read = agent.post("distributed/read", {})
            assert read.status_code == 200 and "queries" in _json(read)
            config = agent.post("config", {})
            assert config.status_code == 200 and "options" in _json(config)
            # writes are refused in JSON, and osquery retries them
            logged = agent.post(
                "log", {"log_type": "status", "data": [{"severity": "0", "message": "hi"}]}
            )
            assert logged.status_code == 503 and "database" in str(_json(logged)["error"])
            written = agent.post(
                "distributed/write",
                {"queries": {"fleet_detail_query_os_version": [{"name": "Ubuntu"}]}},
            )
            assert written.status_code in (200, 503)
            _json(written)
            again = Agent(client, "test-enroll-secret", "h2", "u2").enroll()
            assert "error" in again and not again.get("node_key")
        finally:
            own_pg.resume()
        deadline = time.monotonic() + 30
        while True:
            logged = agent.post("log", {"log_type": "status", "data": []})
            if logged.status_code == 200:
                break
            assert time.monotonic() < deadline, logged.text
            time.sleep(0.2)
        assert Agent(client, "test-enroll-secret", "h2", "u2").enroll()["node_key"]
        while client.get("/healthz").json()["status"] != "ok":
            assert time.monotonic() < deadline
            time.sleep(0.2)
