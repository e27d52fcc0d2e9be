"""Live query campaigns end to end over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from fleetwatch.config import Settings
from tests.agent import Agent
from tests.conftest import login
from tests.server import RunningServer, running_server

SECRET = "test-enroll-secret"


class Fleet:
    """A few osquery-shaped agents and an authenticated API client."""

    def __init__(self, server: RunningServer, token: str, n: int) -> None:
        self.server = server
        self.api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.agent_client = httpx.Client(base_url=server.url, timeout=30)
        self.agents = [Agent(self.agent_client, SECRET, f"host-{i}", f"uuid-{i}") for i in range(n)]
        for agent in self.agents:
            agent.enroll()
            queries = agent.post("distributed/read", {}).json()["queries"]
            agent.post(
                "distributed/write",
                {"queries": {q: [] for q in queries}, "statuses": {q: 0 for q in queries}},
            )
        self.ids = [h["id"] for h in self.api.get("/api/v1/fleet/hosts").json()["hosts"]]

    def run(self, **body: Any) -> httpx.Response:
        return self.api.post("/api/v1/fleet/queries/run", json=body)

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        reply = self.api.get(f"/api/v1/fleet/campaigns/{campaign_id}")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()["campaign"]
        return body

    def close(self) -> None:
        self.api.close()
        self.agent_client.close()


def answer(
    agent: Agent,
    campaign_id: int,
    rows: list[dict[str, str]] | None = None,
    error: str | None = None,
) -> None:
    name = f"fleet_distributed_query_{campaign_id}"
    body: dict[str, Any] = {
        "queries": {name: rows or []},
        "statuses": {name: 1 if error else 0},
        "messages": {name: error or ""},
        "stats": {name: {"wall_time_ms": 2, "user_time": 1, "system_time": 0, "memory": 0}},
    }
    assert agent.post("distributed/write", body).json() == {}


def read(agent: Agent) -> dict[str, str]:
    queries: dict[str, str] = agent.post("distributed/read", {}).json()["queries"]
    return queries


@pytest.fixture
def fleet(live_server: RunningServer, admin_token: str) -> Iterator[Fleet]:
    f = Fleet(live_server, admin_token, 3)
    yield f
    f.close()


def test_campaign_end_to_end(fleet: Fleet) -> None:
    holder: dict[str, Any] = {}

    def long_poll() -> None:
        started = time.monotonic()
        holder["queries"] = read(fleet.agents[0])
        holder["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.3)  # the read is now held (hold is 1 s)
    reply = fleet.run(query="SELECT version FROM osquery_info", targets=[{"type": "all"}])
    assert reply.status_code == 200, reply.text
    campaign_id = reply.json()["campaign_id"]
    campaign = reply.json()["campaign"]
    assert campaign["status"] == "running"
    assert campaign["totals"]["targeted"] == 3 and campaign["totals"]["online"] == 3
    poller.join()
    name = f"fleet_distributed_query_{campaign_id}"
    assert holder["queries"] == {name: "SELECT version FROM osquery_info"}
    assert holder["elapsed"] < 0.95  # answered when the campaign woke it, not at the hold's end
    # a reply lost to a timeout: the query is offered again until its answer arrives
    assert name in read(fleet.agents[0])
    answer(fleet.agents[0], campaign_id, [{"version": "5.23.1"}])
    answer(fleet.agents[1], campaign_id, error="no such table: osquery_info")
    assert name not in read(fleet.agents[0])  # never twice on a host that answered
    # a resend of the same answer is ignored
    answer(fleet.agents[0], campaign_id, [{"version": "again"}])
    totals = fleet.campaign(campaign_id)["totals"]
    assert totals["responded"] == 2 and totals["failed"] == 1 and totals["pending"] == 1
    assert totals["rows"] == 1
    answer(fleet.agents[2], campaign_id, [{"version": "5.22.0"}, {"version": "extra"}])
    done = fleet.campaign(campaign_id)
    assert done["status"] == "finished" and done["non_responders"] == []
    assert done["totals"]["rows"] == 3 and done["totals"]["pending"] == 0
    results = fleet.api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results").json()
    assert results["count"] == 3
    by_host = {r["hostname"]: r for r in results["results"]}
    assert by_host["host-0"]["rows"] == [{"version": "5.23.1"}]
    assert by_host["host-0"]["status"] == "complete" and by_host["host-0"]["queued"] is False
    assert by_host["host-0"]["stats"]["wall_time_ms"] == 2
    assert by_host["host-1"]["status"] == "error"
    assert by_host["host-1"]["error"] == "no such table: osquery_info"
    for field in ("host_id", "hostname", "status", "error", "rows", "stats", "truncated", "queued"):
        assert field in by_host["host-2"]
    page = fleet.api.get(
        f"/api/v1/fleet/campaigns/{campaign_id}/results", params={"page": 5, "per_page": 2}
    ).json()
    assert page["results"] == [] and page["count"] == 3
    exported = fleet.api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results?format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(exported.text)))
    assert lines[0] == ["host_id", "hostname", "status", "error", "version"]
    assert sorted(line[1:] for line in lines[1:]) == [
        ["host-0", "complete", "", "5.23.1"],
        ["host-1", "error", "no such table: osquery_info", ""],
        ["host-2", "complete", "", "5.22.0"],
        ["host-2", "complete", "", "extra"],
    ]
    activity = fleet.api.get("/api/v1/fleet/activities").json()["activities"][0]
    assert activity["type"] == "live_query" and activity["actor_email"] == "admin@example.com"
    assert activity["details"]["query"] == "SELECT version FROM osquery_info"
    assert activity["details"]["targets_count"] == 3


@pytest.mark.parametrize(
    "sql, message",
    [
        ("", "empty"),
        ("SELECT 1; SELECT 2", "several statements"),
        ("DELETE FROM processes", "only read queries"),
        ("SELEC * FROM processes", "syntax error"),
        (42, "string"),
    ],
)
def test_invalid_sql_is_400_with_position(fleet: Fleet, sql: object, message: str) -> None:
    reply = fleet.run(query=sql, targets=[{"type": "all"}])
    assert reply.status_code == 400
    body = reply.json()
    assert message in body["error"]
    if message == "syntax error":
        assert body["line"] == 1 and body["column"] == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ({"query": "SELECT 1"}, "no targets"),
        ({"query": "SELECT 1", "targets": []}, "no targets"),
        ({"query": "SELECT 1", "targets": [{"type": "host", "id": 999}]}, "no host with id 999"),
        ({"query": "SELECT 1", "targets": [{"type": "label", "id": 999}]}, "no label with id 999"),
        ({"query": "SELECT 1", "targets": [{"type": "team", "id": 3}]}, "no team with id 3"),
        ({"query": "SELECT 1", "targets": [{"type": "planet", "id": 3}]}, "targets[0].type"),
        ({"query": "SELECT 1", "targets": "all"}, "targets must be a list"),
        ({"query": "SELECT 1", "selected": {"hosts": ["a"]}}, "selected.hosts"),
        ({"targets": [{"type": "all"}]}, "exactly one of query"),
        ({"query": "SELECT 1", "query_id": 1, "targets": [{"type": "all"}]}, "exactly one"),
        ({"query_id": 12345, "targets": [{"type": "all"}]}, "no saved query"),
        ({"query": "SELECT 1", "targets": [{"type": "all"}], "wait": -1}, "wait"),
        ({"query": "SELECT 1", "targets": [{"type": "all"}], "timeout": "x"}, "timeout"),
        (
            {"query": "SELECT 1", "targets": [{"type": "all"}], "queue_offline": "no"},
            "queue_offline",
        ),
    ],
)
def test_bad_requests(fleet: Fleet, body: dict[str, Any], message: str) -> None:
    reply = fleet.run(**body)
    assert reply.status_code in (400, 404), reply.text
    assert message in reply.json()["error"]


def test_selected_form_and_team_zero_means_no_team(fleet: Fleet) -> None:
    reply = fleet.run(query="SELECT 1", selected={"hosts": [fleet.ids[0]], "teams": [0]})
    assert reply.status_code == 200
    assert reply.json()["campaign"]["totals"]["targeted"] == 3
    only_one = fleet.run(query="SELECT 1", selected={"hosts": [fleet.ids[1]]})
    assert only_one.json()["campaign"]["totals"]["targeted"] == 1


def test_results_for_campaigns_never_sent_are_ignored(fleet: Fleet) -> None:
    reply = fleet.run(query="SELECT 1", targets=[{"type": "host", "id": fleet.ids[0]}])
    campaign_id = reply.json()["campaign_id"]
    answer(fleet.agents[1], campaign_id, [{"x": "1"}])  # host-1 was never targeted
    answer(fleet.agents[1], 424242, [{"x": "1"}])  # no such campaign
    totals = fleet.campaign(campaign_id)["totals"]
    assert totals["responded"] == 0 and totals["rows"] == 0


def test_offline_hosts_are_queued_and_flagged(fleet: Fleet) -> None:
    hosts = fleet.server.services.hosts
    offline = hosts.by_id(fleet.ids[2])
    assert offline is not None
    offline.seen_time = time.time() - 3600
    reply = fleet.run(query="SELECT 1 AS one", targets=[{"type": "all"}])
    campaign_id = reply.json()["campaign_id"]
    totals = reply.json()["campaign"]["totals"]
    assert totals["online"] == 2 and totals["offline"] == 1 and totals["queued"] == 1
    answer(fleet.agents[0], campaign_id, [{"one": "1"}])
    answer(fleet.agents[1], campaign_id, [{"one": "1"}])
    assert fleet.campaign(campaign_id)["status"] == "finished"
    pending = fleet.api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results").json()["results"]
    assert {r["hostname"]: r["status"] for r in pending}["host-2"] == "offline"
    # the offline host comes back: it still gets the query, and its result says queued
    assert f"fleet_distributed_query_{campaign_id}" in read(fleet.agents[2])
    answer(fleet.agents[2], campaign_id, [{"one": "1"}])
    results = fleet.api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results").json()["results"]
    queued = {r["hostname"]: r for r in results}["host-2"]
    assert queued["status"] == "complete" and queued["queued"] is True
    # without queueing, an offline host is not asked
    offline.seen_time = time.time() - 3600
    plain = fleet.run(query="SELECT 2", targets=[{"type": "all"}], queue_offline=False)
    assert f"fleet_distributed_query_{plain.json()['campaign_id']}" not in read(fleet.agents[2])


def test_timeout_expires_with_non_responders(fleet: Fleet) -> None:
    reply = fleet.run(query="SELECT 1", targets=[{"type": "all"}], timeout=0.5)
    campaign_id = reply.json()["campaign_id"]
    answer(fleet.agents[0], campaign_id, [])
    deadline = time.monotonic() + 10
    while fleet.campaign(campaign_id)["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = fleet.campaign(campaign_id)
    assert done["status"] == "expired"
    assert sorted(done["non_responders"]) == sorted(fleet.ids[1:])


def test_stop(fleet: Fleet) -> None:
    campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    stopped = fleet.api.post(f"/api/v1/fleet/campaigns/{campaign_id}/stop")
    assert stopped.status_code == 200 and stopped.json()["campaign"]["status"] == "stopped"
    assert f"fleet_distributed_query_{campaign_id}" not in read(fleet.agents[0])
    again = fleet.api.post(f"/api/v1/fleet/campaigns/{campaign_id}/stop")
    assert again.status_code == 409 and "already stopped" in again.json()["error"]
    assert fleet.campaign(campaign_id)["status"] == "stopped"
    for path in ("/api/v1/fleet/campaigns/999", "/api/v1/fleet/campaigns/999/results"):
        assert fleet.api.get(path).status_code == 404
    assert fleet.api.post("/api/v1/fleet/campaigns/999/stop").status_code == 404


def test_wait_returns_once_every_online_host_answered(fleet: Fleet) -> None:
    def agents_answer() -> None:
        for agent in fleet.agents:
            for name in read(agent):
                if name.startswith("fleet_distributed_query_"):
                    answer(agent, int(name.rsplit("_", 1)[1]), [{"a": agent.hostname}])

    threading.Timer(0.3, agents_answer).start()
    started = time.monotonic()
    reply = fleet.run(query="SELECT 'x' AS a", targets=[{"type": "all"}], wait=20)
    assert time.monotonic() - started < 15
    body = reply.json()
    assert body["status"] == "finished"
    assert sorted(r["rows"][0]["a"] for r in body["results"]) == ["host-0", "host-1", "host-2"]
    # and with nobody answering, it returns at the wait time with pending results
    empty = fleet.run(query="SELECT 1", targets=[{"type": "all"}], wait=0.5).json()
    assert empty["status"] == "running"
    assert {r["status"] for r in empty["results"]} == {"pending"}


def test_saved_queries_crud_and_run(fleet: Fleet) -> None:
    created = fleet.api.post(
        "/api/v1/fleet/queries",
        json={"name": "users", "query": "SELECT * FROM users", "observer_can_run": True},
    )
    assert created.status_code == 201, created.text
    saved = created.json()["query"]
    assert saved["observer_can_run"] is True
    dup = fleet.api.post("/api/v1/fleet/queries", json={"name": "users", "query": "SELECT 1"})
    assert dup.status_code == 409
    bad = fleet.api.post("/api/v1/fleet/queries", json={"name": "x", "query": "DROP TABLE a"})
    assert bad.status_code == 400 and "only read queries" in bad.json()["error"]
    renamed = fleet.api.patch(f"/api/v1/fleet/queries/{saved['id']}", json={"name": "all users"})
    assert renamed.json()["query"]["name"] == "all users"
    assert [q["name"] for q in fleet.api.get("/api/v1/fleet/queries").json()["queries"]] == [
        "all users"
    ]
    run = fleet.run(query_id=saved["id"], targets=[{"type": "all"}]).json()
    assert run["campaign"]["query"] == "SELECT * FROM users"
    assert run["campaign"]["query_id"] == saved["id"]
    assert fleet.api.delete(f"/api/v1/fleet/queries/{saved['id']}").status_code == 200
    assert fleet.api.get(f"/api/v1/fleet/queries/{saved['id']}").status_code == 404


def sse_events(
    client: httpx.Client, path: str, count: int, headers: dict[str, str] | None = None
) -> list[tuple[str | None, dict[str, Any]]]:
    """The first `count` events of an SSE stream as (id, message)."""
    events: list[tuple[str | None, dict[str, Any]]] = []
    event_id: str | None = None
    with client.stream("GET", path, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                events.append((event_id, json.loads(line[6:])))
                event_id = None
                if len(events) == count:
                    break
    return events


def test_sse_stream_and_resume(fleet: Fleet) -> None:
    campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    answer(fleet.agents[0], campaign_id, [{"n": "0"}])
    path = f"/api/v1/fleet/campaigns/{campaign_id}/events"
    first = sse_events(fleet.api, path, 3)
    types = [m["type"] for _, m in first]
    # the initial results, then the status read in the same snapshot, which carries the cursor
    assert types == ["totals", "result", "status"]
    assert first[1][1]["data"]["hostname"] == "host-0"
    assert first[1][0] is None
    cursor = first[2][0]
    assert cursor is not None and cursor.isdigit()
    answer(fleet.agents[1], campaign_id, [{"n": "1"}])
    answer(fleet.agents[2], campaign_id, [{"n": "2"}])
    # resuming after the cursor: only what came later, no duplicate of host-0
    resumed = sse_events(fleet.api, path, 4, headers={"Last-Event-ID": cursor})
    results = [m["data"]["hostname"] for _, m in resumed if m["type"] == "result"]
    assert results == ["host-1", "host-2"]
    bad = fleet.api.get(path, params={"since": "abc"})
    assert bad.status_code == 400
    token = fleet.api.headers["Authorization"].split()[1]
    anonymous = httpx.get(f"{fleet.server.url}{path}")
    assert anonymous.status_code == 401
    by_query_token = sse_events(httpx.Client(base_url=fleet.server.url), f"{path}?token={token}", 1)
    assert by_query_token[0][1]["type"] == "totals"


def ws_url(server: RunningServer, query: str) -> str:
    return server.url.replace("http", "ws", 1) + f"/api/v1/fleet/results/websocket?{query}"


def ws_messages(socket: Any, until: str, limit: int = 50) -> list[dict[str, Any]]:
    out = []
    for _ in range(limit):
        message = json.loads(socket.recv(timeout=10))
        out.append(message)
        if message["type"] == until or message["type"] == "error":
            break
    return out


def test_websocket_stream_three_ways_to_authenticate(fleet: Fleet) -> None:
    token = fleet.api.headers["Authorization"].split()[1]
    campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    for agent in fleet.agents[:2]:
        answer(agent, campaign_id, [{"h": agent.hostname}])
    url = ws_url(fleet.server, f"campaign_id={campaign_id}")
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as socket:
        got = ws_messages(socket, "status")  # initial results, then their status and cursor
        results = [m for m in got if m["type"] == "result"]
        assert {m["data"]["hostname"] for m in results} == {"host-0", "host-1"}
        assert got[0]["type"] == "totals" and got[0]["data"]["targeted"] == 3
        cursor = max(m["seq"] for m in got if "seq" in m)
        answer(fleet.agents[2], campaign_id, [{"h": "host-2"}])
        rest = ws_messages(socket, "status")
        assert [m["data"]["hostname"] for m in rest if m["type"] == "result"] == ["host-2"]
        assert rest[-1]["data"]["status"] == "finished"
    # reconnect after the cursor: exactly what came after it
    with connect(url + f"&token={token}&since={cursor}") as socket:
        again = ws_messages(socket, "result")
        assert [m["data"]["hostname"] for m in again if m["type"] == "result"] == ["host-2"]
    with connect(url) as socket:
        socket.send(json.dumps({"type": "auth", "data": {"token": token}}))
        assert ws_messages(socket, "totals")[-1]["type"] == "totals"
    with connect(url) as socket:
        socket.send(json.dumps({"type": "auth", "data": {"token": "wrong"}}))
        error = ws_messages(socket, "error")[-1]
        assert error["type"] == "error" and "unknown or revoked" in error["data"]["error"]
    with connect(ws_url(fleet.server, f"campaign_id=999&token={token}")) as socket:
        assert "no campaign" in ws_messages(socket, "error")[-1]["data"]["error"]
    with connect(ws_url(fleet.server, f"token={token}")) as socket:
        assert "campaign_id" in ws_messages(socket, "error")[-1]["data"]["error"]


def test_row_caps_truncate_explicitly(server_settings: Settings) -> None:
    settings = server_settings.model_copy(
        update={"live_query_max_rows_per_host": 2, "live_query_max_rows_per_campaign": 3}
    )
    with running_server(settings) as server:
        fleet = Fleet(server, login(server), 2)
        try:
            campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()[
                "campaign_id"
            ]
            answer(fleet.agents[0], campaign_id, [{"n": str(i)} for i in range(5)])
            answer(fleet.agents[1], campaign_id, [{"n": str(i)} for i in range(5)])
            results = fleet.api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results").json()
            by_host = {r["hostname"]: r for r in results["results"]}
            assert len(by_host["host-0"]["rows"]) == 2 and by_host["host-0"]["truncated"]
            assert by_host["host-0"]["rows_count"] == 5
            assert len(by_host["host-1"]["rows"]) == 1 and by_host["host-1"]["truncated"]
            totals = fleet.campaign(campaign_id)["totals"]
            assert totals["rows"] == 3 and totals["truncated"] == 2
        finally:
            fleet.close()


def test_kill_switch(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"live_queries_disabled": True})
    with running_server(settings) as server:
        fleet = Fleet(server, login(server), 1)
        try:
            reply = fleet.run(query="SELECT 1", targets=[{"type": "all"}])
            assert reply.status_code == 403
            assert "disabled by the administrator" in reply.json()["error"]
        finally:
            fleet.close()


def test_campaigns_survive_a_restart(server_settings: Settings) -> None:
    with running_server(server_settings) as server:
        fleet = Fleet(server, login(server), 2)
        campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
        answer(fleet.agents[0], campaign_id, [{"a": "1"}])
        node_keys = [a.node_key for a in fleet.agents]
        fleet.close()
    with running_server(server_settings) as server:
        fleet = Fleet.__new__(Fleet)
        fleet.server = server
        fleet.api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}
        )
        fleet.agent_client = httpx.Client(base_url=server.url, timeout=30)
        agents = [Agent(fleet.agent_client, SECRET, f"host-{i}", f"uuid-{i}") for i in range(2)]
        for agent, key in zip(agents, node_keys, strict=True):
            agent.node_key = key
        try:
            name = f"fleet_distributed_query_{campaign_id}"
            assert name not in read(agents[0])
            assert name in read(agents[1])
            totals = fleet.campaign(campaign_id)["totals"]
            assert totals["responded"] == 1 and totals["pending"] == 1
            answer(agents[1], campaign_id, [{"a": "2"}])
            assert fleet.campaign(campaign_id)["status"] == "finished"
        finally:
            fleet.close()


def test_websocket_client_that_leaves_an_idle_campaign_is_let_go(fleet: Fleet) -> None:
    token = fleet.api.headers["Authorization"].split()[1]
    campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    hub = fleet.server.services.subscriptions
    before = hub.subscriber_count
    url = ws_url(fleet.server, f"campaign_id={campaign_id}&token={token}")
    with connect(url) as socket:
        ws_messages(socket, "status")  # everything there is so far: the stream is now idle
        assert hub.subscriber_count == before + 1
    # nobody answers, so the stream stays idle: the closed socket alone must end it
    deadline = time.monotonic() + 20
    while hub.subscriber_count != before:
        assert time.monotonic() < deadline, "the campaign stream outlived its client"
        time.sleep(0.05)
