"""Users' query tasks are scoped, over real sockets on both backends.

A team observer asks for the whole index and gets only what it may see (its team's hosts and
their logs, its own campaigns and their results, labels, its team) in the initial results, the
WebSocket and SSE streams, direct queries and result pages; another team user cannot see,
change or stream its tasks; the scope survives a restart. A global observer sees everything
but other users' campaigns and their results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from fleetwatch.config import Settings
from tests.agent import Agent
from tests.conftest import login
from tests.query.task_client import TASKS, sse_events, task_body, term
from tests.server import RunningServer, running_server

S1 = "team-one-enroll-secret"
S2 = "team-two-enroll-secret"

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
    #: clients handed out by `client` and `global_user`, closed with the world
    opened: list[httpx.Client] = field(default_factory=list)

    def client(self, who: str) -> httpx.Client:
        return self.keep(
            httpx.Client(
                base_url=self.server.url,
                headers={"Authorization": f"Bearer {self.tokens[who]}"},
                timeout=30,
            )
        )

    def keep(self, client: httpx.Client) -> httpx.Client:
        self.opened.append(client)
        return client

    def enroll(self, secret: str, name: str) -> Agent:
        agent = Agent(self.agents, secret, name, f"uuid-{name}")
        assert "node_key" in agent.enroll()
        return agent

    def host_id(self, name: str) -> int:
        hosts = self.admin.get("/api/v1/fleet/hosts", params={"query": name}).json()["hosts"]
        found: int = next(h["id"] for h in hosts if h["hostname"] == name)
        return found

    def close(self) -> None:
        for client in (self.admin, self.agents, *self.opened):
            client.close()


def setup(server: RunningServer) -> Teams:
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}, timeout=30
    )
    team1 = admin.post("/api/v1/fleet/teams", json={"name": "one"}).json()["team"]["id"]
    team2 = admin.post("/api/v1/fleet/teams", json={"name": "two"}).json()["team"]["id"]
    admin.post(f"/api/v1/fleet/teams/{team1}/secrets", json={"secret": S1})
    admin.post(f"/api/v1/fleet/teams/{team2}/secrets", json={"secret": S2})
    tokens, users = {}, {}
    for who, role in (("observer", "observer"), ("maintainer", "maintainer")):
        email = f"team-{who}@example.com"
        made = admin.post(
            "/api/v1/fleet/users",
            json={
                "email": email,
                "password": "user-password-1",
                "global_role": None,
                "teams": [{"id": team1, "role": role}],
            },
        )
        assert made.status_code == 201, made.text
        users[who] = made.json()["user"]["id"]
        tokens[who] = login(server, email, "user-password-1")
    return Teams(server, admin, httpx.Client(base_url=server.url), team1, team2, tokens, users)


@pytest.fixture
def teams(live_server: RunningServer) -> Iterator[Teams]:
    world = setup(live_server)
    yield world
    world.close()


def allowed(doc: dict[str, Any], team: int, user_id: int) -> bool:
    """What a member of `team` (user `user_id`) may see."""
    kind = doc["documentKind"]
    if kind == "fleet:result":  # answers to the user's own campaigns, from its teams
        return bool(doc.get("team_id") == team and doc.get("campaign_user_id") == user_id)
    if kind in ("fleet:host", "fleet:log"):
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
    a = teams.enroll(S1, "host-a")
    b = teams.enroll(S2, "host-b")
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
        teams.enroll(S2, "host-d")
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
        saved = teams.admin.post(
            "/api/v1/fleet/queries",
            json={"name": "observers", "query": "SELECT 3", "observer_can_run": True},
        ).json()["query"]["id"]
        mine = observer.post(
            "/api/v1/fleet/queries/run", json={"query_id": saved, "targets": [{"type": "all"}]}
        )
        assert mine.status_code == 200, mine.text
        answer(a, mine.json()["campaign_id"])  # the one result this observer may see
        teams.enroll(S1, "host-e")  # the last write: a sentinel the streams must reach
        host_e = f"/fleet/hosts/{teams.host_id('host-e')}"

        for name, read in (
            ("ws", lambda: json.loads(ws.recv(timeout=20))),
            ("sse", lambda: _next_sse(sse_iter)),
        ):
            seen: dict[str, dict[str, Any]] = {}
            while host_e not in seen:
                message = read()  # SSE starts with its own initial results
                assert message["type"] in ("initial", "current", "change"), (name, message)
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
    teams.enroll(S1, "host-a")
    teams.enroll(S2, "host-b")
    teams.enroll(S1, "host-e")
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
        world.enroll(S1, "host-a")
        world.enroll(S2, "host-b")
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
            world.enroll(S2, "host-c")  # another team: not counted
            world.enroll(S1, "host-d")  # this team: counted
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


def test_a_users_tasks_follow_its_roles_and_end_with_it(teams: Teams) -> None:
    hosts = term("documentKind", "fleet:host")
    links, scopes = {}, {}
    teams.enroll(S1, "host-a")
    teams.enroll(S2, "host-b")
    for who in ("observer", "maintainer"):
        with teams.client(who) as client:
            created = client.post(TASKS, json=task_body(hosts, "CONTINUOUS", "COUNT")).json()
            links[who], scopes[who] = created["documentSelfLink"], created["scope"]
            assert created["results"]["documentCount"] == 1
    moved = teams.admin.patch(
        f"/api/v1/fleet/users/{teams.users['observer']}",
        json={"teams": [{"id": teams.team2, "role": "observer"}]},
    )
    assert moved.status_code == 200, moved.text
    # restarted within the new team: its scope and results are the new team's
    task = teams.admin.get(links["observer"]).json()
    assert task["taskInfo"]["stage"] == "STARTED", task
    assert task["scope"] != scopes["observer"]
    assert task["results"]["documentCount"] == 1
    teams.enroll(S1, "host-c")  # the old team: no longer counted
    teams.enroll(S2, "host-d")
    assert teams.admin.get(links["observer"]).json()["results"]["documentCount"] == 2
    assert teams.admin.get(links["maintainer"]).json()["results"]["documentCount"] == 2
    # renaming changes no role: the task and its scope stay
    maintainer = f"/api/v1/fleet/users/{teams.users['maintainer']}"
    assert teams.admin.patch(maintainer, json={"name": "m"}).status_code == 200
    task = teams.admin.get(links["maintainer"]).json()
    assert task["taskInfo"]["stage"] == "STARTED" and task["scope"] == scopes["maintainer"]
    assert teams.admin.delete(maintainer).status_code == 200
    task = teams.admin.get(links["maintainer"]).json()
    assert task["taskInfo"]["stage"] == "CANCELLED"
    assert task["taskInfo"]["failure"] == {"message": "the user was deleted"}


def global_user(teams: Teams, role: str) -> tuple[httpx.Client, int]:
    """A user with a global role, made by the admin through the API, and its client."""
    email = f"global-{role}@example.com"
    made = teams.admin.post(
        "/api/v1/fleet/users",
        json={"email": email, "password": "user-password-1", "global_role": role},
    )
    assert made.status_code == 201, made.text
    token = login(teams.server, email, "user-password-1")
    client = teams.keep(
        httpx.Client(
            base_url=teams.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    )
    user_id: int = made.json()["user"]["id"]
    return client, user_id


def run(client: httpx.Client, body: dict[str, Any]) -> int:
    reply = client.post("/api/v1/fleet/queries/run", json={**body, "targets": [{"type": "all"}]})
    assert reply.status_code == 200, reply.text
    campaign_id: int = reply.json()["campaign_id"]
    return campaign_id


def private_leaks(docs: dict[str, dict[str, Any]], me: int) -> list[str]:
    """Campaign documents (and their results) of other users, and campaign bookkeeping."""
    leaked = []
    for link, doc in docs.items():
        kind = doc["documentKind"]
        if (
            (kind == "fleet:campaign" and doc.get("user_id") != me)
            or (kind == "fleet:result" and doc.get("campaign_user_id") != me)
            or kind == "fleet:campaign-targets"
        ):
            leaked.append(link)
    return leaked


def test_a_global_observer_sees_only_its_own_campaigns_and_results(teams: Teams) -> None:
    """Campaigns are private to their creator and admins, through query tasks too: initial
    results, WebSocket, SSE, direct tasks, result pages and GET of a task."""
    a = teams.enroll(S1, "host-a")
    observer, me = global_user(teams, "observer")
    saved = teams.admin.post(
        "/api/v1/fleet/queries",
        json={"name": "mine", "query": "SELECT 'observer'", "observer_can_run": True},
    ).json()["query"]["id"]
    before = run(teams.admin, {"query": "SELECT 'admin secret before'"})
    answer(a, before)
    created = observer.post(TASKS, json=task_body(EVERYTHING, "CONTINUOUS", "EXPAND_CONTENT"))
    assert created.status_code == 202, created.text
    link = created.json()["documentSelfLink"]
    ws_url = teams.server.url.replace("http", "ws", 1) + f"{link}/stream"
    with (
        connect(
            ws_url, additional_headers={"Authorization": observer.headers["Authorization"]}
        ) as ws,
        observer.stream("GET", f"{link}/events") as sse,
    ):
        assert sse.status_code == 200
        sse_iter = sse_events(sse)
        after = run(teams.admin, {"query": "SELECT 'admin secret after'"})
        answer(a, after)
        own = run(observer, {"query_id": saved})
        answer(a, own)
        teams.enroll(S1, "host-e")  # the last write: a sentinel the streams must reach
        host_e = f"/fleet/hosts/{teams.host_id('host-e')}"
        for name, read in (
            ("ws", lambda: json.loads(ws.recv(timeout=20))),
            ("sse", lambda: _next_sse(sse_iter)),
        ):
            seen: dict[str, dict[str, Any]] = {}
            while host_e not in seen:
                message = read()
                if message["type"] == "current":  # the caught-up marker carries no documents
                    continue
                assert message["type"] in ("initial", "change"), (name, message)
                seen.update(documents_of(message))
            assert not private_leaks(seen, me), (name, private_leaks(seen, me))
            assert f"/fleet/campaigns/{own}" in seen, name
            assert f"/fleet/campaigns/{own}/results/{teams.host_id('host-a')}" in seen, name
            assert f"/fleet/hosts/{teams.host_id('host-a')}" in seen, name  # hosts: visible
    assert not private_leaks(documents_of(observer.get(link).json()), me)

    private = {
        "occurance": "MUST_OCCUR",
        "booleanClauses": [
            term("documentKind", kind, "SHOULD_OCCUR")
            for kind in ("fleet:campaign", "fleet:result", "fleet:campaign-targets")
        ],
    }
    direct = observer.post(TASKS, json=task_body(private, "EXPAND_CONTENT", direct=True))
    assert direct.status_code == 200, direct.text
    docs = documents_of(direct.json())
    host_a = teams.host_id("host-a")
    assert sorted(docs) == [f"/fleet/campaigns/{own}", f"/fleet/campaigns/{own}/results/{host_a}"]
    assert not private_leaks(docs, me)
    # the admin sees all three campaigns, their results and targets
    everything = teams.admin.post(TASKS, json=task_body(private, direct=True)).json()
    assert everything["results"]["documentCount"] == 9
    # result pages follow the same scope
    paged = observer.post(TASKS, json=task_body(private, "EXPAND_CONTENT", resultLimit=1))
    assert paged.status_code == 202, paged.text
    results = paged.json()["results"]
    assert results["documentCount"] == 2
    seen_pages: dict[str, dict[str, Any]] = {}
    page: str | None = results["nextPageLink"]
    while page:
        reply = observer.get(page)
        assert reply.status_code == 200, reply.text
        seen_pages.update(documents_of(reply.json()))
        page = reply.json()["results"].get("nextPageLink")
    assert sorted(seen_pages) == sorted(docs)
    observer.close()


def test_a_host_leaving_the_team_is_shown_as_it_was(teams: Teams) -> None:
    """CONTINUOUS_STOP_MATCH + EXPAND_CONTENT: when a host moves to another team, the team
    user's stop-match carries the host as the user last saw it, never its new document."""
    teams.enroll(S1, "host-a")
    host_a = teams.host_id("host-a")
    link_a = f"/fleet/hosts/{host_a}"
    observer = teams.client("observer")
    body = task_body(
        term("documentKind", "fleet:host"), "CONTINUOUS", "CONTINUOUS_STOP_MATCH", "EXPAND_CONTENT"
    )
    task = observer.post(TASKS, json=body).json()
    link = task["documentSelfLink"]
    ws_url = teams.server.url.replace("http", "ws", 1) + f"{link}/stream"
    auth = {"Authorization": f"Bearer {teams.tokens['observer']}"}
    with (
        connect(ws_url, additional_headers=auth) as ws,
        observer.stream("GET", f"{link}/events") as sse,
    ):
        sse_iter = sse_events(sse)
        initial = _next_sse(sse_iter)  # SSE starts with its own initial results
        assert initial["type"] == "initial" and link_a in documents_of(initial)
        message = json.loads(ws.recv(timeout=20))
        assert message["type"] == "initial" and link_a in documents_of(message)
        moved = teams.admin.post(
            "/api/v1/fleet/hosts/transfer", json={"team_id": teams.team2, "hosts": [host_a]}
        )
        assert moved.status_code == 200, moved.text
        for name, read in (
            ("ws", lambda: json.loads(ws.recv(timeout=20))),
            ("sse", lambda: _next_sse(sse_iter)),
        ):
            message = read()
            # the caught-up marker, and changes of other documents, may come first
            while message["type"] == "current" or link_a not in message["results"].get(
                "documentLinks", []
            ):
                message = read()
            assert message["event"] == "stopMatch", (name, message)
            assert message["results"]["documentLinks"] == [link_a]
            shown = documents_of(message)[link_a]
            assert shown["team_id"] == teams.team1, (name, shown)
    state = observer.get(link).json()
    assert state["results"]["documents"][link_a]["team_id"] == teams.team1
    # a global admin's task (no scope) sees the host as it is now
    assert (
        teams.admin.get(link_a.replace("/fleet/", "/api/v1/fleet/")).json()["host"]["team_id"]
        == teams.team2
    )
    observer.close()


def test_expand_links_shows_only_linked_documents_in_the_users_scope(teams: Teams) -> None:
    """A maintainer's document may name anything; EXPAND_LINKS must not show a linked
    document the maintainer may not read (another user's campaign), only the link."""
    teams.enroll(S1, "host-l")
    maintainer, _ = global_user(teams, "maintainer")
    theirs = f"/fleet/campaigns/{run(teams.admin, {'query': 'SELECT 1'})}"
    mine = f"/fleet/campaigns/{run(maintainer, {'query': 'SELECT 2'})}"
    made = maintainer.post("/docs/notes", json={"documentSelfLink": "n1", "see": [theirs, mine]})
    assert made.status_code == 200, made.text
    body = task_body(
        term("documentSelfLink", "/docs/notes/n1"),
        "SELECT_LINKS",
        "EXPAND_LINKS",
        direct=True,
        linkTerms=[{"propertyName": "see"}],
    )
    for client, shown in ((maintainer, [mine]), (teams.admin, sorted([theirs, mine]))):
        reply = client.post(TASKS, json=body)
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        assert results["selectedLinks"] == sorted([theirs, mine])
        assert sorted(results["selectedDocuments"]) == shown
