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

from fleetwatch import sql_check
from fleetwatch.config import Settings
from fleetwatch.dispatch.holds import hold_for
from fleetwatch.index import now_micros
from fleetwatch.index.retention import ChangeLogRetention
from tests.agent import Agent, answer_details
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
            answer_details(agent)
        self.ids = [h["id"] for h in self.api.get("/api/v1/fleet/hosts").json()["hosts"]]

    def hosts(self) -> list[dict[str, Any]]:
        hosts: list[dict[str, Any]] = self.api.get("/api/v1/fleet/hosts").json()["hosts"]
        return hosts

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

    # Holds are spread over the hold window by each host's slot (dispatch/holds.py): start the
    # read when its hold will be most of the 1 s, so it is surely still held at the POST.
    settings = fleet.server.services.settings
    host_id = next(h["id"] for h in fleet.hosts() if h["hostname"] == "host-0")
    hold, interval = settings.distributed_hold, settings.distributed_interval
    while hold_for(host_id, time.time(), hold, interval) < 0.8 * hold:
        time.sleep(0.01)
    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.3)  # the read is now held
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
        ("SELECT " + "(" * 500 + "1" + ")" * 500, "nests parentheses or expressions too deeply"),
        ("SELECT " + "(" * 60 + "1" + ")" * 60, "too deeply to check"),
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


def test_late_answers_tell_one_story_in_campaign_and_stream(fleet: Fleet) -> None:
    reply = fleet.run(query="SELECT 1", targets=[{"type": "all"}], timeout=0.5)
    campaign_id = reply.json()["campaign_id"]
    answer(fleet.agents[0], campaign_id, [])
    deadline = time.monotonic() + 10
    while fleet.campaign(campaign_id)["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    token = fleet.api.headers["Authorization"].split()[1]
    url = ws_url(fleet.server, f"campaign_id={campaign_id}&token={token}")
    with connect(url) as socket:
        opening = ws_messages(socket, "status")
        assert opening[-1]["data"]["status"] == "expired"
        assert sorted(opening[-1]["data"]["non_responders"]) == sorted(fleet.ids[1:])
        answer(fleet.agents[1], campaign_id, [{"x": "late"}])
        # the late result, then the campaign's status with the host gone from non_responders
        later = ws_messages(socket, "status")
        results = [m["data"] for m in later if m["type"] == "result"]
        assert [(r["hostname"], r["late"]) for r in results] == [("host-1", True)]
        assert later[-1]["data"] == {
            "campaign_id": campaign_id,
            "status": "expired",
            "non_responders": [fleet.ids[2]],
        }
        # and totals that count it (sent when the stream next checks them)
        while not any(m["type"] == "totals" and m["data"]["late"] for m in later):
            later.append(json.loads(socket.recv(timeout=10)))
    totals = [m["data"] for m in later if m["type"] == "totals"][-1]
    assert (totals["responded"], totals["pending"], totals["late"]) == (2, 1, 1)
    done = fleet.campaign(campaign_id)
    assert done["non_responders"] == [fleet.ids[2]] and done["totals"]["late"] == 1


def test_campaign_list_is_paged(fleet: Fleet) -> None:
    ids = [
        fleet.run(query=f"SELECT {n}", targets=[{"type": "all"}]).json()["campaign_id"]
        for n in range(3)
    ]
    first = fleet.api.get("/api/v1/fleet/campaigns", params={"per_page": 2}).json()
    assert [c["id"] for c in first["campaigns"]] == ids[::-1][:2]  # newest first
    assert (first["count"], first["page"], first["per_page"]) == (3, 0, 2)
    second = fleet.api.get("/api/v1/fleet/campaigns", params={"page": 1, "per_page": 2}).json()
    assert [c["id"] for c in second["campaigns"]] == [ids[0]]
    bad = fleet.api.get("/api/v1/fleet/campaigns", params={"per_page": 0})
    assert bad.status_code == 400 and "per_page" in bad.json()["error"]


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
    # status, totals and results describe one instant, and are what GET gives afterwards
    assert body["campaign"]["status"] == "finished"
    totals = body["campaign"]["totals"]
    assert (totals["responded"], totals["pending"], totals["rows"]) == (3, 0, 3)
    path = f"/api/v1/fleet/campaigns/{body['campaign_id']}/results"
    assert fleet.api.get(path).json()["results"] == body["results"]
    # and with nobody answering, it returns at the wait time with pending results
    empty = fleet.run(query="SELECT 1", targets=[{"type": "all"}], wait=0.5).json()
    assert empty["status"] == "running"
    assert {r["status"] for r in empty["results"]} == {"pending"}
    assert (empty["campaign"]["totals"]["responded"], empty["campaign"]["totals"]["pending"]) == (
        0,
        3,
    )


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
    client: httpx.Client,
    path: str,
    count: int,
    headers: dict[str, str] | None = None,
    until: str | None = None,
) -> list[tuple[str | None, dict[str, Any]]]:
    """The first `count` events of an SSE stream as (id, message), or fewer up to the first
    of type `until`."""
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
                if len(events) == count or events[-1][1]["type"] == until:
                    break
    return events


def test_sse_stream_and_resume(fleet: Fleet) -> None:
    campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    answer(fleet.agents[0], campaign_id, [{"n": "0"}])
    path = f"/api/v1/fleet/campaigns/{campaign_id}/events"
    first = sse_events(fleet.api, path, 4)
    types = [m["type"] for _, m in first]
    # the initial documents in the order of their writes (the campaign's, then the result),
    # each with its write's sequence as id; then the caught-up marker
    assert types == ["totals", "status", "result", "current"]
    assert first[2][1]["data"]["hostname"] == "host-0"
    ids = [int(i) for i, m in first[1:] if i is not None]
    assert len(ids) == 3 and ids[0] < ids[1] <= ids[2]
    assert [m["seq"] for _, m in first[1:]] == ids
    cursor = first[2][0]  # the snapshot's result: a cursor like any other
    assert cursor is not None
    answer(fleet.agents[1], campaign_id, [{"n": "1"}])
    answer(fleet.agents[2], campaign_id, [{"n": "2"}])
    # resuming after the cursor: only what came later, no duplicate of host-0, then current
    resumed = sse_events(fleet.api, path, 50, headers={"Last-Event-ID": cursor}, until="current")
    results = [m["data"]["hostname"] for _, m in resumed if m["type"] == "result"]
    assert results == ["host-1", "host-2"]
    assert resumed[-1][1]["type"] == "current"
    bad = fleet.api.get(path, params={"since": "abc"})
    assert bad.status_code == 400
    token = fleet.api.headers["Authorization"].split()[1]
    anonymous = httpx.get(f"{fleet.server.url}{path}")
    assert anonymous.status_code == 401
    by_query_token = sse_events(httpx.Client(base_url=fleet.server.url), f"{path}?token={token}", 1)
    assert by_query_token[0][1]["type"] == "totals"


def test_every_campaign_event_is_a_cursor_and_an_old_one_resyncs(fleet: Fleet) -> None:
    """Resuming after any event of the initial results gives exactly what followed it, then
    `current`; a cursor older than the change log keeps gets an explicit reset."""
    campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    for i, agent in enumerate(fleet.agents):
        answer(agent, campaign_id, [{"n": str(i)}])
    path = f"/api/v1/fleet/campaigns/{campaign_id}/events"
    uncut = [(i, m) for i, m in sse_events(fleet.api, path, 50, until="current")]
    cursored = [(i, m) for i, m in uncut if m["type"] != "totals"]
    assert [m["type"] for _, m in cursored].count("result") == 3
    assert cursored[-1][1]["type"] == "current"
    ids = [int(i) for i, _ in cursored if i is not None]
    assert len(ids) == len(cursored) and ids == sorted(ids)
    for cut, (cursor, _) in enumerate(cursored):
        assert cursor is not None
        resumed = sse_events(
            fleet.api, path, 50, headers={"Last-Event-ID": cursor}, until="current"
        )
        after = [(i, m) for i, m in resumed if m["type"] != "totals"]
        assert all(int(i) > int(cursor) for i, m in after[:-1] if i is not None)
        assert after[-1][1]["type"] == "current"
        want = [m["data"] for _, m in cursored[cut + 1 :] if m["type"] == "result"]
        assert [m["data"] for _, m in after if m["type"] == "result"] == want, cut

    async def trim() -> int:
        retention = ChangeLogRetention(fleet.server.services.index.db, retention=1)
        return await retention.trim_once(now=now_micros() + 10_000_000)

    assert fleet.server.call(trim()) > 0
    reset = sse_events(fleet.api, path, 50, headers={"Last-Event-ID": "1"}, until="current")
    errors = [m for _, m in reset if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["data"]["resync"] is True
    assert "older than the change log keeps" in errors[0]["data"]["error"]
    assert len([m for _, m in reset if m["type"] == "result"]) == 3  # the results afresh
    assert reset[-1][1]["type"] == "current"


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
        got = ws_messages(socket, "current")  # initial results, each with its seq, then current
        results = [m for m in got if m["type"] == "result"]
        assert [m["data"]["hostname"] for m in results] == ["host-0", "host-1"]
        assert got[0]["type"] == "totals" and got[0]["data"]["targeted"] == 3
        assert all(isinstance(m["seq"], int) for m in got if m["type"] != "totals")
        cursor = got[-1]["seq"]
        assert cursor >= max(m["seq"] for m in results)
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


def test_csv_export_defuses_formula_cells(fleet: Fleet) -> None:
    """Cells an agent controls (hostname, column names, values) never start a formula."""
    hostile = Agent(fleet.agent_client, SECRET, '=HYPERLINK("http://evil.example")', "uuid-evil")
    hostile.enroll()
    host_id = next(
        h["id"]
        for h in fleet.api.get("/api/v1/fleet/hosts").json()["hosts"]
        if h["uuid"] == "uuid-evil"
    )
    reply = fleet.run(query="SELECT 1", targets=[{"type": "host", "id": host_id}])
    campaign_id = reply.json()["campaign_id"]
    row = {"@cmd": "+1+1", "tab": "\tx", "cr": "\rx", "minus": "-2+3", "plain": "a=b"}
    answer(hostile, campaign_id, [row])
    exported = fleet.api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results?format=csv")
    # every cell quoted: a spreadsheet splitting on ';' or tab cannot cut a cell open
    assert exported.text.startswith('"host_id","hostname"')
    lines = list(csv.reader(io.StringIO(exported.text, newline="")))
    assert lines[0] == ["host_id", "hostname", "status", "error", "'@cmd", "tab", "cr", "minus"] + [
        "plain"
    ]
    assert lines[1] == [
        str(host_id),
        '\'=HYPERLINK("http://evil.example")',
        "complete",
        "",
        "'+1+1",
        "'\tx",
        "'\rx",
        "'-2+3",
        "a=b",
    ]


def test_a_user_has_at_most_max_campaigns_per_user_campaigns_asking(
    server_settings: Settings,
) -> None:
    settings = server_settings.model_copy(update={"max_campaigns_per_user": 2})
    with running_server(settings) as server:
        fleet = Fleet(server, login(server), 2)
        try:
            made = fleet.api.post(
                "/api/v1/fleet/users",
                json={
                    "email": "maintainer@example.com",
                    "password": "user-password-1",
                    "global_role": "maintainer",
                },
            )
            assert made.status_code == 201, made.text
            token = login(server, "maintainer@example.com", "user-password-1")
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as maintainer:

                def run() -> httpx.Response:
                    return maintainer.post(
                        "/api/v1/fleet/queries/run",
                        json={"query": "SELECT 1", "targets": [{"type": "all"}]},
                    )

                first, second = run().json()["campaign_id"], run().json()["campaign_id"]
                refused = run()
                assert refused.status_code == 429, refused.text
                assert "max_campaigns_per_user = 2" in refused.json()["error"]
                # one host's next read carries at most this user's two
                asked = [q for q in read(fleet.agents[0]) if q.startswith("fleet_distributed_")]
                assert len(asked) == 2
                # other users have their own allowance
                assert fleet.run(query="SELECT 2", targets=[{"type": "all"}]).status_code == 200
                # a stopped campaign no longer counts
                stopped = maintainer.post(f"/api/v1/fleet/campaigns/{first}/stop")
                assert stopped.status_code == 200
                assert run().status_code == 200
                assert run().status_code == 429
                # nor one every target has answered
                for agent in fleet.agents:
                    answer(agent, second)
                assert fleet.campaign(second)["status"] == "finished"
                assert run().status_code == 200
                assert run().status_code == 429
        finally:
            fleet.close()


def test_campaign_sql_is_checked_off_the_event_loop(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long query's check (most of a second for 100 KB) must not stall every request."""
    threads: list[str] = []
    real = sql_check.check_live_sql

    def recording(sql: object) -> str:
        threads.append(threading.current_thread().name)
        return real(sql)

    monkeypatch.setattr(sql_check, "check_live_sql", recording)
    assert fleet.run(query="SELECT 1", targets=[{"type": "all"}]).status_code == 200
    assert threads and all(name.startswith("fleetwatch-sql-check") for name in threads)


def test_campaign_streams_end_when_their_token_is_revoked(fleet: Fleet) -> None:
    """A second session of the same admin opens a WebSocket and an SSE stream; logging
    that session out ends both (an error saying why; WebSocket close code 4401), and the
    first session's stream goes on."""
    from websockets.exceptions import ConnectionClosed

    campaign_id = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign_id"]
    session = login(fleet.server)
    other = fleet.api.headers["Authorization"].split()[1]
    url = ws_url(fleet.server, f"campaign_id={campaign_id}")
    headers = {"Authorization": f"Bearer {session}"}
    path = f"/api/v1/fleet/campaigns/{campaign_id}/events"
    with (
        connect(url, additional_headers=headers) as socket,
        connect(f"{url}&token={other}") as kept,
        httpx.Client(base_url=fleet.server.url, headers=headers, timeout=30) as client,
        client.stream("GET", path) as response,
    ):
        # the snapshot ends with the campaign's status, then the caught-up marker
        assert ws_messages(socket, "current")[-1]["type"] == "current"
        assert ws_messages(kept, "current")[-1]["type"] == "current"
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        assert client.post("/api/v1/fleet/logout").status_code == 200
        error = json.loads(socket.recv(timeout=10))
        assert error["type"] == "error" and "revoked" in error["data"]["error"], error
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        assert data[-1]["type"] == "error" and "revoked" in data[-1]["data"]["error"], data
        assert all(d["type"] in ("totals", "result", "status", "current") for d in data[:-1])
        answer(fleet.agents[0], campaign_id, [{"h": "host-0"}])
        rest = ws_messages(kept, "result")
        assert rest[-1]["type"] == "result", rest


def test_a_canary_asks_a_random_sample_and_a_rerun_the_rest(fleet: Fleet) -> None:
    reply = fleet.run(query="SELECT 1 AS one", targets=[{"type": "all"}], sample={"count": 2})
    assert reply.status_code == 200, reply.text
    canary = reply.json()["campaign"]
    assert canary["sample"] == {"of": 3, "chosen": 2}
    assert canary["totals"]["targeted"] == 2
    name = f"fleet_distributed_query_{canary['id']}"
    chosen = [a for a in fleet.agents if name in read(a)]
    assert len(chosen) == 2
    for agent in chosen:
        answer(agent, canary["id"], [{"one": "1"}])
    assert fleet.campaign(canary["id"])["status"] == "finished"
    assert fleet.campaign(canary["id"])["sample"] == {"of": 3, "chosen": 2}
    rest = fleet.api.post(
        f"/api/v1/fleet/campaigns/{canary['id']}/rerun", json={"hosts": "remaining"}
    )
    assert rest.status_code == 201, rest.text
    left = [a for a in fleet.agents if a not in chosen]
    remaining = rest.json()["campaign"]
    assert remaining["rerun_of"] == canary["id"] and remaining["totals"]["targeted"] == 1
    assert [
        a.hostname for a in fleet.agents if f"fleet_distributed_query_{remaining['id']}" in read(a)
    ] == [a.hostname for a in left]
    # a percentage is rounded up: at least one host
    tiny = fleet.run(query="SELECT 1", targets=[{"type": "all"}], sample={"percent": 1})
    assert tiny.json()["campaign"]["sample"] == {"of": 3, "chosen": 1}
    whole = fleet.run(query="SELECT 1", targets=[{"type": "all"}], sample={"percent": 100})
    assert whole.json()["campaign"]["sample"] == {"of": 3, "chosen": 3}
    # a sample of everything leaves nothing remaining
    nothing = fleet.api.post(f"/api/v1/fleet/campaigns/{whole.json()['campaign_id']}/stop")
    assert nothing.status_code == 200
    none_left = fleet.api.post(
        f"/api/v1/fleet/campaigns/{whole.json()['campaign_id']}/rerun", json={"hosts": "remaining"}
    )
    assert none_left.status_code == 400
    assert "no targets its sample left out" in none_left.json()["error"]
    plain = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign"]
    assert plain["sample"] is None and plain["rerun_of"] is None


@pytest.mark.parametrize(
    "sample, message",
    [
        ({"percent": 101}, "sample.percent must be over 0 and at most 100"),
        ({"percent": 0}, "sample.percent must be over 0 and at most 100"),
        ({"percent": "10"}, "sample.percent must be a number"),
        ({"count": 0}, "sample.count must be at least one host"),
        ({"count": 1.5}, "sample.count must be an integer"),
        ({"count": 1, "percent": 5}, "exactly one of percent or count"),
        ({}, "exactly one of percent or count"),
        (10, "exactly one of percent or count"),
    ],
)
def test_bad_samples_are_400_and_start_nothing(fleet: Fleet, sample: object, message: str) -> None:
    reply = fleet.run(query="SELECT 1", targets=[{"type": "all"}], sample=sample)
    assert reply.status_code == 400
    assert message in reply.json()["error"]
    assert fleet.api.get("/api/v1/fleet/campaigns").json()["count"] == 0


def test_campaign_history_filters_newest_first(fleet: Fleet) -> None:
    saved = fleet.api.post(
        "/api/v1/fleet/queries", json={"name": "uptime", "query": "SELECT * FROM uptime"}
    ).json()["query"]
    a1 = fleet.run(query="SELECT 1", targets=[{"type": "all"}], timeout=0.5).json()["campaign"]
    b = fleet.run(query="SELECT 2", targets=[{"type": "all"}]).json()["campaign"]
    time.sleep(0.01)  # distinct creation times for since/until
    a2 = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign"]
    s = fleet.run(query_id=saved["id"], targets=[{"type": "all"}]).json()["campaign"]
    deadline = time.monotonic() + 10
    while fleet.campaign(a1["id"])["status"] == "running":  # over, and still listed
        assert time.monotonic() < deadline
        time.sleep(0.1)

    def ids(**params: Any) -> list[int]:
        reply = fleet.api.get("/api/v1/fleet/campaigns", params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["count"] >= len(body["campaigns"])
        return [c["id"] for c in body["campaigns"]]

    assert ids() == [s["id"], a2["id"], b["id"], a1["id"]]
    assert ids(sql="SELECT 1") == [a2["id"], a1["id"]]
    assert ids(sql="select 1") == [] and ids(sql="SELECT 1 ") == []  # exact
    assert ids(query_id=saved["id"]) == [s["id"]]
    assert ids(user_id=a1["user_id"]) == [s["id"], a2["id"], b["id"], a1["id"]]
    assert ids(user_id=a1["user_id"] + 100) == []
    assert ids(since=b["created_at"]) == [s["id"], a2["id"], b["id"]]
    assert ids(until=b["created_at"]) == [b["id"], a1["id"]]
    assert ids(since=a2["created_at"], until=a2["created_at"], sql="SELECT 1") == [a2["id"]]
    assert ids(since="2000-01-01T00:00:00") == ids()  # no zone: UTC
    paged = fleet.api.get("/api/v1/fleet/campaigns", params={"sql": "SELECT 1", "per_page": 1})
    assert paged.json()["count"] == 2 and [c["id"] for c in paged.json()["campaigns"]] == [a2["id"]]
    assert ids(sql="SELECT 1", per_page=1, page=1) == [a1["id"]]
    assert fleet.api.get("/api/v1/fleet/campaigns").json()["campaigns"][-1]["status"] == "expired"
    for params, message in [
        ({"since": "yesterday"}, "since must be an RFC 3339 time"),
        ({"until": "2026-13-01"}, "until must be an RFC 3339 time"),
        ({"query_id": "x"}, "query_id"),
        ({"user_id": "me"}, "user_id"),
    ]:
        bad = fleet.api.get("/api/v1/fleet/campaigns", params=params)
        assert bad.status_code == 400 and message in bad.json()["error"], bad.text


def test_campaign_history_is_each_users_own(fleet: Fleet) -> None:
    mine = fleet.run(query="SELECT 1", targets=[{"type": "all"}]).json()["campaign"]
    made = fleet.api.post(
        "/api/v1/fleet/users",
        json={"email": "m@example.com", "password": "user-password-1", "global_role": "maintainer"},
    )
    assert made.status_code == 201, made.text
    token = login(fleet.server, "m@example.com", "user-password-1")
    with httpx.Client(
        base_url=fleet.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as other:
        theirs = other.post(
            "/api/v1/fleet/queries/run", json={"query": "SELECT 1", "targets": [{"type": "all"}]}
        ).json()["campaign"]
        seen = other.get("/api/v1/fleet/campaigns").json()
        assert [c["id"] for c in seen["campaigns"]] == [theirs["id"]] and seen["count"] == 1
        asked = other.get("/api/v1/fleet/campaigns", params={"user_id": mine["user_id"]}).json()
        assert asked["campaigns"] == [] and asked["count"] == 0
    everyone = fleet.api.get("/api/v1/fleet/campaigns", params={"sql": "SELECT 1"}).json()
    assert [c["id"] for c in everyone["campaigns"]] == [theirs["id"], mine["id"]]
