"""Team users' query tasks are scoped to their teams, over real sockets on both backends.

A team observer asks for the whole index and gets only what it may see (its team's hosts,
their results and logs, its own campaigns, labels, its team) in the initial results, the
WebSocket and SSE streams, direct queries and result pages; another team user cannot see,
change or stream its tasks; the scope survives a restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from fleetwatch.config import Settings
from tests.agent import Agent
from tests.conftest import login
from tests.query.task_client import TASKS, sse_events, task_body, term
from tests.server import RunningServer, running_server

EVERYTHING = term("documentSelfLink", "/", match="PREFIX")


@dataclass
class Teams:
    server: RunningServer
    admin: httpx.Client
    agents: httpx.Client
    team1: int
    team2: int
    tokens: dict[str, str]
    users: dict[str, int]

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=30,
        )

    def enroll(self, secret: str, name: str) -> Agent:
        agent = Agent(self.agents, secret, name, f"uuid-{name}")
        assert "node_key" in agent.enroll()
        return agent

    def host_id(self, name: str) -> int:
        hosts = self.admin.get("/api/v1/fleet/hosts", params={"query": name}).json()["hosts"]
        found: int = next(h["id"] for h in hosts if h["hostname"] == name)
        return found

    def close(self) -> None:
        self.admin.close()
        self.agents.close()


def setup(server: RunningServer) -> Teams:
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}, timeout=30
    )
    team1 = admin.post("/api/v1/fleet/teams", json={"name": "one"}).json()["team"]["id"]
    team2 = admin.post("/api/v1/fleet/teams", json={"name": "two"}).json()["team"]["id"]
    admin.post(f"/api/v1/fleet/teams/{team1}/secrets", json={"secret": "s1"})
    admin.post(f"/api/v1/fleet/teams/{team2}/secrets", json={"secret": "s2"})
    tokens, users = {}, {}
    for who, role in (("observer", "observer"), ("maintainer", "maintainer")):
        email = f"team-{who}@example.com"
        made = admin.post(
            "/api/v1/fleet/users",
            json={
                "email": email,
                "password": "password-1",
                "global_role": None,
                "teams": [{"id": team1, "role": role}],
            },
        )
        assert made.status_code == 201, made.text
        users[who] = made.json()["user"]["id"]
        tokens[who] = login(server, email, "password-1")
    return Teams(server, admin, httpx.Client(base_url=server.url), team1, team2, tokens, users)


@pytest.fixture
def teams(live_server: RunningServer) -> Iterator[Teams]:
    world = setup(live_server)
    yield world
    world.close()


def allowed(doc: dict[str, Any], team: int, user_id: int) -> bool:
    """What a member of `team` (user `user_id`) may see."""
    kind = doc["documentKind"]
    if kind in ("fleet:host", "fleet:result", "fleet:log"):
        return bool(doc.get("team_id") == team)
    if kind == "fleet:team":
        return bool(doc["id"] == team)
    if kind == "fleet:campaign":
        return bool(doc["user_id"] == user_id)
    return bool(kind == "fleet:label")


def answer(agent: Agent, campaign_id: int) -> None:
    name = f"fleet_distributed_query_{campaign_id}"
    body = {
        "queries": {name: [{"who": agent.hostname}]},
        "statuses": {name: 0},
        "messages": {name: ""},
    }
    assert agent.post("distributed/write", body).json() == {}


def send_log(agent: Agent) -> None:
    row = {
        "name": "pack/p/q",
        "hostIdentifier": agent.uuid,
        "calendarTime": "Mon Nov 23 10:00:00 2026 UTC",
        "unixTime": 1795000000,
        "epoch": 0,
        "counter": 1,
        "action": "added",
        "columns": {"who": agent.hostname},
    }
    assert agent.post("log", {"log_type": "result", "data": [row]}).json() == {}


def documents_of(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = message.get("results", {}).get("documents", {})
    return docs


def test_team_task_sees_only_its_team_over_ws_and_sse(teams: Teams) -> None:
    a = teams.enroll("s1", "host-a")
    b = teams.enroll("s2", "host-b")
    c = teams.enroll("test-enroll-secret", "host-c")
    observer, maintainer = teams.client("observer"), teams.client("maintainer")
    me = teams.users["observer"]
    created = observer.post(TASKS, json=task_body(EVERYTHING, "CONTINUOUS", "EXPAND_CONTENT"))
    assert created.status_code == 202, created.text
    task = created.json()
    link = task["documentSelfLink"]
    assert task["scope"]["booleanClauses"]  # shown beside the query as it was sent
    assert task["querySpec"]["query"] == {
        "occurance": "MUST_OCCUR",
        "term": EVERYTHING["term"],
    }
    host_a = f"/fleet/hosts/{teams.host_id('host-a')}"

    ws_url = teams.server.url.replace("http", "ws", 1) + f"{link}/stream"
    auth = {"Authorization": f"Bearer {teams.tokens['observer']}"}
    with (
        connect(ws_url, additional_headers=auth) as ws,
        observer.stream("GET", f"{link}/events") as sse,
    ):
        assert sse.status_code == 200
        sse_iter = sse_events(sse)
        # the initial results: this team's host, the labels, this team; nothing else
        initial: dict[str, dict[str, Any]] = {}
        while True:
            message = json.loads(ws.recv(timeout=20))
            assert message["type"] == "initial"
            initial.update(documents_of(message))
            if message["last"]:
                break
        assert host_a in initial and f"/fleet/teams/{teams.team1}" in initial
        assert any(d["documentKind"] == "fleet:label" for d in initial.values())
        assert all(allowed(d, teams.team1, me) for d in initial.values()), initial.keys()

        # other teams' and team-less hosts, their answers and logs, others' campaigns
        teams.enroll("s2", "host-d")
        everyone = teams.admin.post(
            "/api/v1/fleet/queries/run", json={"query": "SELECT 1", "targets": [{"type": "all"}]}
        ).json()["campaign_id"]
        for agent in (a, b, c):
            answer(agent, everyone)
        for agent in (a, b, c):
            send_log(agent)
        own = maintainer.post(
            "/api/v1/fleet/queries/run", json={"query": "SELECT 2", "targets": [{"type": "all"}]}
        )
        assert own.json()["campaign"]["totals"]["targeted"] == 1  # host-a only
        teams.enroll("s1", "host-e")  # the last write: a sentinel the streams must reach
        host_e = f"/fleet/hosts/{teams.host_id('host-e')}"

        for name, read in (
            ("ws", lambda: json.loads(ws.recv(timeout=20))),
            ("sse", lambda: _next_sse(sse_iter)),
        ):
            seen: dict[str, dict[str, Any]] = {}
            while host_e not in seen:
                message = read()  # SSE starts with its own initial results
                assert message["type"] in ("initial", "change"), (name, message)
                seen.update(documents_of(message))
            leaked = [k for k, d in seen.items() if not allowed(d, teams.team1, me)]
            assert not leaked, (name, leaked)
            kinds = {d["documentKind"] for d in seen.values()}
            assert {"fleet:result", "fleet:log", "fleet:host"} <= kinds, (name, kinds)
            assert any(
                d["documentKind"] == "fleet:result" and d["hostname"] == "host-a"
                for d in seen.values()
            )
    observer.close()
    maintainer.close()


def _next_sse(events: Iterator[tuple[str | None, dict[str, Any] | None]]) -> dict[str, Any]:
    for _, data in events:
        if data is not None:
            return data
    raise AssertionError("the SSE stream ended")


def test_direct_queries_pages_and_other_users_tasks(teams: Teams) -> None:
    teams.enroll("s1", "host-a")
    teams.enroll("s2", "host-b")
    teams.enroll("s1", "host-e")
    observer, maintainer = teams.client("observer"), teams.client("maintainer")
    hosts = {"documentKind": "fleet:host"}
    host_query = term("documentKind", hosts["documentKind"])
    direct = observer.post(TASKS, json=task_body(host_query, "EXPAND_CONTENT", direct=True))
    assert direct.status_code == 200, direct.text
    names = {d["hostname"] for d in direct.json()["results"]["documents"].values()}
    assert names == {"host-a", "host-e"}
    everything = teams.admin.post(TASKS, json=task_body(host_query, direct=True)).json()
    assert everything["results"]["documentCount"] == 3  # a global role: no scope

    # campaigns: each user sees only those it started
    maintainer.post(
        "/api/v1/fleet/queries/run", json={"query": "SELECT 2", "targets": [{"type": "all"}]}
    )
    teams.admin.post(
        "/api/v1/fleet/queries/run", json={"query": "SELECT 1", "targets": [{"type": "all"}]}
    )
    campaigns = term("documentKind", "fleet:campaign")
    mine = maintainer.post(TASKS, json=task_body(campaigns, "EXPAND_CONTENT", direct=True))
    docs = mine.json()["results"]["documents"].values()
    assert [d["user_id"] for d in docs] == [teams.users["maintainer"]]
    none = observer.post(TASKS, json=task_body(campaigns, direct=True)).json()
    assert none["results"]["documentCount"] == 0

    # result pages of a scoped one-shot task, readable by its owner only
    paged = observer.post(TASKS, json=task_body(host_query, resultLimit=1)).json()
    assert paged["results"]["documentCount"] == 2
    page = paged["results"]["nextPageLink"]
    assert observer.get(page).status_code == 200
    assert maintainer.get(page).status_code == 404
    assert teams.admin.get(page).status_code == 200

    # another team user's tasks answer 404, and are not listed
    task = observer.post(TASKS, json=task_body(host_query, "CONTINUOUS")).json()
    link = task["documentSelfLink"]
    for method, path in (
        ("GET", link),
        ("PATCH", link),
        ("DELETE", link),
        ("GET", f"{link}/events"),
        ("GET", f"{link}/subscriptions"),
        ("POST", f"{link}/subscriptions"),
    ):
        body: dict[str, Any] | None = None
        if method == "PATCH":
            body = {"taskInfo": {"stage": "CANCELLED"}}
        if path.endswith("subscriptions") and method == "POST":
            body = {"reference": "http://127.0.0.1:9/hook"}
        reply = maintainer.request(method, path, json=body)
        assert reply.status_code == 404, (method, path, reply.text)
    ws_url = teams.server.url.replace("http", "ws", 1) + f"{link}/stream"
    token = teams.tokens["maintainer"]
    with connect(f"{ws_url}?token={token}") as ws:
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and "no query task" in error["error"]
    assert link not in maintainer.get(TASKS).json()["documentLinks"]
    assert link in observer.get(TASKS).json()["documentLinks"]
    assert link in teams.admin.get(TASKS).json()["documentLinks"]  # global: every task
    assert teams.admin.get(link).status_code == 200
    assert maintainer.get("/core/document-index/stats").status_code == 403
    cancelled = observer.patch(link, json={"taskInfo": {"stage": "CANCELLED"}})
    assert cancelled.status_code == 200 and cancelled.json()["taskInfo"]["stage"] == "CANCELLED"
    assert observer.delete(link).status_code == 200
    # user documents stay global-only
    assert observer.get("/docs/notes").status_code == 403
    observer.close()
    maintainer.close()


def test_scope_survives_a_restart(server_settings: Settings) -> None:
    with running_server(server_settings) as server:
        world = setup(server)
        world.enroll("s1", "host-a")
        world.enroll("s2", "host-b")
        with world.client("observer") as observer:
            hosts = term("documentKind", "fleet:host")
            task = observer.post(TASKS, json=task_body(hosts, "CONTINUOUS", "COUNT")).json()
            assert task["results"]["documentCount"] == 1
        tokens = world.tokens
        world.close()
    with running_server(server_settings) as server:
        world = setup_after_restart(server, tokens)
        with world.client("observer") as observer:
            link = task["documentSelfLink"]
            assert observer.get(link).json()["scope"] == task["scope"]
            world.enroll("s2", "host-c")  # another team: not counted
            world.enroll("s1", "host-d")  # this team: counted
            # the count follows the change log as each enrollment is written
            assert observer.get(link).json()["results"]["documentCount"] == 2
        world.close()


def setup_after_restart(server: RunningServer, tokens: dict[str, str]) -> Teams:
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}, timeout=30
    )
    listed = admin.get("/api/v1/fleet/teams").json()["teams"]
    ids = {t["name"]: t["id"] for t in listed}
    return Teams(
        server, admin, httpx.Client(base_url=server.url), ids["one"], ids["two"], tokens, {}
    )


def test_a_users_tasks_are_cancelled_when_its_roles_change(teams: Teams) -> None:
    hosts = term("documentKind", "fleet:host")
    links = {}
    for who in ("observer", "maintainer"):
        with teams.client(who) as client:
            created = client.post(TASKS, json=task_body(hosts, "CONTINUOUS")).json()
            links[who] = created["documentSelfLink"]
    moved = teams.admin.patch(
        f"/api/v1/fleet/users/{teams.users['observer']}",
        json={"teams": [{"id": teams.team2, "role": "observer"}]},
    )
    assert moved.status_code == 200, moved.text
    task = teams.admin.get(links["observer"]).json()
    assert task["taskInfo"]["stage"] == "CANCELLED"
    assert task["taskInfo"]["failure"] == {"message": "the user's roles changed"}
    assert teams.admin.get(links["maintainer"]).json()["taskInfo"]["stage"] == "STARTED"
    # renaming changes no role: the task keeps running
    maintainer = f"/api/v1/fleet/users/{teams.users['maintainer']}"
    assert teams.admin.patch(maintainer, json={"name": "m"}).status_code == 200
    assert teams.admin.get(links["maintainer"]).json()["taskInfo"]["stage"] == "STARTED"
    assert teams.admin.delete(maintainer).status_code == 200
    task = teams.admin.get(links["maintainer"]).json()
    assert task["taskInfo"]["stage"] == "CANCELLED"
    assert task["taskInfo"]["failure"] == {"message": "the user was deleted"}
