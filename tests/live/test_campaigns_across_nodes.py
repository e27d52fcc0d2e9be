"""A live query on two nodes sharing PostgreSQL and Redis (in-process servers on loopback).

Hosts check in on node A; the campaign is created and streamed on node B. The held reads on
A wake when B creates the campaign, the results A stores reach B's WebSocket, and both nodes
count the same totals.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from fleetwatch.config import Settings
from tests.agent import Agent, answer_details, wait_for_long_hold
from tests.conftest import login
from tests.server import cluster_node_settings, running_server
from tests.services import PostgresServer

SECRET = "test-enroll-secret"


def _settings(database_url: str, redis_url: str, data_dir: Path) -> Settings:
    return cluster_node_settings(database_url, redis_url, data_dir, distributed_hold=3.0)


def _read(agent: Agent) -> dict[str, str]:
    queries: dict[str, str] = agent.post("distributed/read", {}).json()["queries"]
    return queries


def _answer(agent: Agent, campaign_id: int, rows: list[dict[str, str]]) -> None:
    name = f"fleet_distributed_query_{campaign_id}"
    body = {"queries": {name: rows}, "statuses": {name: 0}, "messages": {name: ""}}
    assert agent.post("distributed/write", body).json() == {}


def test_campaign_created_on_one_node_runs_on_the_other(
    pg_server: PostgresServer, redis_url: str, tmp_path: Path
) -> None:
    database_url = pg_server.create_database(f"two_nodes_{time.monotonic_ns()}")
    with (
        running_server(_settings(database_url, redis_url, tmp_path / "a")) as a,
        httpx.Client(base_url=a.url, timeout=30) as client_a,
    ):
        agents = [Agent(client_a, SECRET, f"host-{i}", f"uuid-{i}") for i in range(3)]
        for agent in agents:
            agent.enroll()
            answer_details(agent)  # detail queries: answer them so the host is complete
        time.sleep(0.5)  # seen times flushed: node B sees the hosts online when it loads
        with (
            running_server(_settings(database_url, redis_url, tmp_path / "b")) as b,
            httpx.Client(base_url=b.url, timeout=30) as api_b,
        ):
            token = login(b)
            api_b.headers["Authorization"] = f"Bearer {token}"
            held: dict[str, Any] = {}

            def long_poll() -> None:
                started = time.monotonic()
                held["queries"] = _read(agents[0])
                held["elapsed"] = time.monotonic() - started

            hosts = api_b.get("/api/v1/fleet/hosts", params={"query": "host-0"}).json()["hosts"]
            # holds are spread by each host's slot (osquery/holds.py): start at a long one
            wait_for_long_hold(hosts[0]["id"], hold=3.0, interval=1)
            poller = threading.Thread(target=long_poll)
            poller.start()
            time.sleep(0.5)  # agent 0's read is held on node A (about 2.4 s of the 3 s hold)
            reply = api_b.post(
                "/api/v1/fleet/queries/run",
                json={"query": "SELECT 1 AS one", "targets": [{"type": "all"}]},
            )
            assert reply.status_code == 200, reply.text
            campaign_id = reply.json()["campaign_id"]
            assert reply.json()["campaign"]["totals"]["online"] == 3
            poller.join()
            name = f"fleet_distributed_query_{campaign_id}"
            assert held["queries"] == {name: "SELECT 1 AS one"}
            # woken by node B's campaign, not released by the end of the 3 s hold
            assert held["elapsed"] < 2.5
            ws = b.url.replace("http", "ws", 1)
            url = f"{ws}/api/v1/fleet/results/websocket?campaign_id={campaign_id}&token={token}"
            with connect(url) as socket:
                first = json.loads(socket.recv(timeout=10))
                assert first["type"] == "totals" and first["data"]["targeted"] == 3
                for agent in agents:
                    assert name in _read(agent)  # node A offers it to each host
                    _answer(agent, campaign_id, [{"one": "1", "host": agent.hostname}])
                seen: list[str] = []
                status = None
                while status != "finished":
                    message = json.loads(socket.recv(timeout=10))
                    if message["type"] == "result":
                        seen.append(message["data"]["hostname"])
                    if message["type"] == "status":
                        status = message["data"]["status"]
                assert sorted(seen) == ["host-0", "host-1", "host-2"]
            # both nodes agree on the totals; node A never offers it again
            for server in (a, b):
                body = server.call(server.services.campaigns.get(campaign_id))
                assert body["status"] == "finished"
                assert body["totals"]["responded"] == 3 and body["totals"]["rows"] == 3
            assert name not in _read(agents[0])
