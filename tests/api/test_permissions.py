"""The permission matrix: every user route against every role.

Roles: the global admin, a global maintainer, a global observer, a maintainer of team 1 and
an observer of team 1. Team 1 has host A, team 2 host B, host C has no team. A team user
asking for something outside its teams gets 404 (ids do not leak), not 403.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.agent import Agent
from tests.conftest import login
from tests.server import RunningServer

ROLES = ["admin", "maintainer", "observer", "team_maintainer", "team_observer"]


@dataclass
class World:
    api: httpx.Client  # as admin
    tokens: dict[str, str]
    host_a: int
    host_b: int
    host_c: int
    team1: int
    team2: int
    observer_query: int
    plain_query: int
    users: dict[str, int]
    agents: httpx.Client

    def close(self) -> None:
        self.api.close()
        self.agents.close()


def build(server: RunningServer, admin_token: str) -> World:
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"})
    team1 = api.post("/api/v1/fleet/teams", json={"name": "one"}).json()["team"]["id"]
    team2 = api.post("/api/v1/fleet/teams", json={"name": "two"}).json()["team"]["id"]
    api.post(f"/api/v1/fleet/teams/{team1}/secrets", json={"secret": "s1"})
    api.post(f"/api/v1/fleet/teams/{team2}/secrets", json={"secret": "s2"})
    agents = httpx.Client(base_url=server.url)
    for secret, name in (("s1", "A"), ("s2", "B"), ("test-enroll-secret", "C")):
        Agent(agents, secret, name, f"uuid-{name}").enroll()
    hosts = {h["hostname"]: h["id"] for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
    specs: dict[str, dict[str, Any]] = {
        "maintainer": {"global_role": "maintainer"},
        "observer": {"global_role": "observer"},
        "team_maintainer": {"global_role": None, "teams": [{"id": team1, "role": "maintainer"}]},
        "team_observer": {"global_role": None, "teams": [{"id": team1, "role": "observer"}]},
    }
    tokens = {"admin": admin_token}
    users = {}
    for role, spec in specs.items():
        email = f"{role}@example.com"
        made = api.post(
            "/api/v1/fleet/users", json={"email": email, "password": "password-1", **spec}
        )
        assert made.status_code == 201, made.text
        users[role] = made.json()["user"]["id"]
        tokens[role] = login(server, email, "password-1")
    observer_query = api.post(
        "/api/v1/fleet/queries", json={"name": "obs", "query": "SELECT 1", "observer_can_run": True}
    ).json()["query"]["id"]
    plain_query = api.post(
        "/api/v1/fleet/queries", json={"name": "plain", "query": "SELECT 2"}
    ).json()["query"]["id"]
    return World(
        api,
        tokens,
        hosts["A"],
        hosts["B"],
        hosts["C"],
        team1,
        team2,
        observer_query,
        plain_query,
        users,
        agents,
    )


Row = tuple[str, Callable[[World], tuple[str, str, Any]], dict[str, int]]


def same(code: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, code)


def only(code: int, allowed: list[str], other: int) -> dict[str, int]:
    return {r: code if r in allowed else other for r in ROLES}


def fresh_host(w: World, team: int | None) -> int:
    """A new host (in team 1 when team is set) for a destructive call."""
    name = f"tmp-{len(w.api.get('/api/v1/fleet/hosts').json()['hosts'])}"
    Agent(w.agents, "s1" if team else "test-enroll-secret", name, f"u-{name}").enroll()
    host_id: int = next(
        h["id"] for h in w.api.get("/api/v1/fleet/hosts").json()["hosts"] if h["hostname"] == name
    )
    return host_id


def fresh_label(w: World) -> int:
    n = len(w.api.get("/api/v1/fleet/labels").json()["labels"])
    label_id: int = w.api.post(
        "/api/v1/fleet/labels", json={"name": f"l{n}", "query": "SELECT 1"}
    ).json()["label"]["id"]
    return label_id


def fresh_query(w: World) -> int:
    n = len(w.api.get("/api/v1/fleet/queries").json()["queries"])
    query_id: int = w.api.post(
        "/api/v1/fleet/queries", json={"name": f"q{n}", "query": "SELECT 3"}
    ).json()["query"]["id"]
    return query_id


ROWS: list[Row] = [
    ("list hosts", lambda w: ("GET", "/api/v1/fleet/hosts", None), same(200)),
    ("host in my team", lambda w: ("GET", f"/api/v1/fleet/hosts/{w.host_a}", None), same(200)),
    (
        "host in another team",
        lambda w: ("GET", f"/api/v1/fleet/hosts/{w.host_b}", None),
        only(200, ["admin", "maintainer", "observer"], 404),
    ),
    (
        "host with no team",
        lambda w: ("GET", f"/api/v1/fleet/hosts/{w.host_c}", None),
        only(200, ["admin", "maintainer", "observer"], 404),
    ),
    (
        "logs of another team's host",
        lambda w: ("GET", f"/api/v1/fleet/hosts/{w.host_b}/logs", None),
        only(200, ["admin", "maintainer", "observer"], 404),
    ),
    (
        "delete a team host",
        lambda w: ("DELETE", f"/api/v1/fleet/hosts/{fresh_host(w, 1)}", None),
        {
            "admin": 200,
            "maintainer": 200,
            "observer": 403,
            "team_maintainer": 200,
            "team_observer": 403,
        },
    ),
    (
        "delete another team's host",
        lambda w: ("DELETE", f"/api/v1/fleet/hosts/{fresh_host(w, None)}", None),
        {
            "admin": 200,
            "maintainer": 200,
            "observer": 403,
            "team_maintainer": 404,
            "team_observer": 404,
        },
    ),
    (
        "transfer",
        lambda w: (
            "POST",
            "/api/v1/fleet/hosts/transfer",
            {"team_id": w.team1, "hosts": [w.host_a]},
        ),
        {
            "admin": 200,
            "maintainer": 200,
            "observer": 403,
            "team_maintainer": 200,
            "team_observer": 403,
        },
    ),
    ("list labels", lambda w: ("GET", "/api/v1/fleet/labels", None), same(200)),
    (
        "create label",
        lambda w: (
            "POST",
            "/api/v1/fleet/labels",
            {"name": f"new-{id(w)}-{len(w.tokens)}", "query": "SELECT 1"},
        ),
        {
            "admin": 201,
            "maintainer": 409,
            "observer": 403,
            "team_maintainer": 403,
            "team_observer": 403,
        },
    ),
    (
        "delete label",
        lambda w: ("DELETE", f"/api/v1/fleet/labels/{fresh_label(w)}", None),
        only(200, ["admin", "maintainer"], 403),
    ),
    ("list teams", lambda w: ("GET", "/api/v1/fleet/teams", None), same(200)),
    (
        "see another team",
        lambda w: ("GET", f"/api/v1/fleet/teams/{w.team2}", None),
        only(200, ["admin", "maintainer", "observer"], 404),
    ),
    (
        "create team",
        lambda w: ("POST", "/api/v1/fleet/teams", {"name": "made"}),
        {
            "admin": 201,
            "maintainer": 403,
            "observer": 403,
            "team_maintainer": 403,
            "team_observer": 403,
        },
    ),
    (
        "team secrets",
        lambda w: ("GET", f"/api/v1/fleet/teams/{w.team1}/secrets", None),
        only(200, ["admin"], 403),
    ),
    ("global secrets", lambda w: ("GET", "/api/v1/fleet/secrets", None), only(200, ["admin"], 403)),
    ("users", lambda w: ("GET", "/api/v1/fleet/users", None), only(200, ["admin"], 403)),
    (
        "create user",
        lambda w: (
            "POST",
            "/api/v1/fleet/users",
            {"email": "x@example.com", "password": "password-9"},
        ),
        {
            "admin": 201,
            "maintainer": 403,
            "observer": 403,
            "team_maintainer": 403,
            "team_observer": 403,
        },
    ),
    (
        "agent config",
        lambda w: ("GET", "/api/v1/fleet/config", None),
        only(200, ["admin", "maintainer", "observer"], 403),
    ),
    (
        "change agent config",
        lambda w: ("PUT", "/api/v1/fleet/config", {"options": {}}),
        only(200, ["admin"], 403),
    ),
    ("saved queries", lambda w: ("GET", "/api/v1/fleet/queries", None), same(200)),
    (
        "save a query",
        lambda w: (
            "POST",
            "/api/v1/fleet/queries",
            {
                "name": f"s{len(w.api.get('/api/v1/fleet/queries').json()['queries'])}",
                "query": "SELECT 1",
            },
        ),
        only(201, ["admin", "maintainer"], 403),
    ),
    (
        "delete a query",
        lambda w: ("DELETE", f"/api/v1/fleet/queries/{fresh_query(w)}", None),
        only(200, ["admin", "maintainer"], 403),
    ),
    (
        "run new SQL on all",
        lambda w: (
            "POST",
            "/api/v1/fleet/queries/run",
            {"query": "SELECT 1", "targets": [{"type": "all"}]},
        ),
        {
            "admin": 200,
            "maintainer": 200,
            "observer": 403,
            "team_maintainer": 200,
            "team_observer": 403,
        },
    ),
    (
        "run an observer query",
        lambda w: (
            "POST",
            "/api/v1/fleet/queries/run",
            {"query_id": w.observer_query, "targets": [{"type": "all"}]},
        ),
        same(200),
    ),
    (
        "run a plain saved query",
        lambda w: (
            "POST",
            "/api/v1/fleet/queries/run",
            {"query_id": w.plain_query, "targets": [{"type": "all"}]},
        ),
        {
            "admin": 200,
            "maintainer": 200,
            "observer": 403,
            "team_maintainer": 200,
            "team_observer": 403,
        },
    ),
    (
        "target another team's host",
        lambda w: (
            "POST",
            "/api/v1/fleet/queries/run",
            {"query_id": w.observer_query, "targets": [{"type": "host", "id": w.host_b}]},
        ),
        {
            "admin": 200,
            "maintainer": 200,
            "observer": 200,
            "team_maintainer": 400,
            "team_observer": 400,
        },
    ),
    (
        "activities",
        lambda w: ("GET", "/api/v1/fleet/activities", None),
        only(200, ["admin", "maintainer", "observer"], 403),
    ),
    ("me", lambda w: ("GET", "/api/v1/fleet/me", None), same(200)),
    ("tokens", lambda w: ("GET", "/api/v1/fleet/me/tokens", None), same(200)),
    (
        "continuous queries",
        lambda w: ("GET", "/core/local-query-tasks", None),
        same(200),
    ),
    (
        "documents",
        lambda w: ("GET", "/docs/notes", None),
        only(200, ["admin", "maintainer", "observer"], 403),
    ),
]


def test_permission_matrix(live_server: RunningServer, admin_token: str) -> None:
    world = build(live_server, admin_token)
    failures = []
    with httpx.Client(base_url=live_server.url) as client:
        for name, make, expected in ROWS:
            for role in ROLES:
                method, path, body = make(world)
                headers = {"Authorization": f"Bearer {world.tokens[role]}"}
                reply = client.request(method, path, json=body, headers=headers)
                if reply.status_code != expected[role]:
                    failures.append(f"{name} as {role}: {reply.status_code} {reply.text[:120]}")
                if reply.status_code >= 400:
                    assert "error" in reply.json()
            anonymous = client.request(method, path, json=body)
            if anonymous.status_code != 401:
                failures.append(f"{name} without a token: {anonymous.status_code}")
    world.close()
    assert not failures, "\n".join(failures)


def test_team_user_sees_only_its_hosts_and_campaigns(
    live_server: RunningServer, admin_token: str
) -> None:
    world = build(live_server, admin_token)
    with httpx.Client(base_url=live_server.url) as client:
        team = {"Authorization": f"Bearer {world.tokens['team_maintainer']}"}
        listed = client.get("/api/v1/fleet/hosts", headers=team).json()
        assert [h["id"] for h in listed["hosts"]] == [world.host_a] and listed["count"] == 1
        run = client.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT 1", "targets": [{"type": "all"}]},
            headers=team,
        )
        campaign = run.json()["campaign"]
        assert campaign["totals"]["targeted"] == 1  # only its team's host
        # another user cannot read the campaign, stream it or export it
        other = {"Authorization": f"Bearer {world.tokens['maintainer']}"}
        for path in (
            f"/api/v1/fleet/campaigns/{campaign['id']}",
            f"/api/v1/fleet/campaigns/{campaign['id']}/results",
            f"/api/v1/fleet/campaigns/{campaign['id']}/results?format=csv",
            f"/api/v1/fleet/campaigns/{campaign['id']}/events",
        ):
            assert client.get(path, headers=other).status_code == 404, path
        assert (
            client.get(
                f"/api/v1/fleet/campaigns/{campaign['id']}",
                headers={"Authorization": f"Bearer {admin_token}"},
            ).status_code
            == 200
        )
    world.close()


def test_login_rate_limit_and_tokens(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        codes = [
            client.post(
                "/api/v1/fleet/login",
                json={"email": "admin@example.com", "password": "wrong-guess"},
            ).status_code
            for _ in range(11)
        ]
        assert codes[:10] == [401] * 10 and codes[10] == 429
        limited = client.post(
            "/api/v1/fleet/login",
            json={"email": "admin@example.com", "password": "admin-password-1"},
        )
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        assert "too many login attempts" in limited.json()["error"]
        # other accounts are not locked out by it
        other = client.post(
            "/api/v1/fleet/login", json={"email": "someone@example.com", "password": "x-password"}
        )
        assert other.status_code == 401
    with httpx.Client(base_url=live_server.url) as client:
        # behind a proxy on the same machine, the forwarded address is the one limited
        session = client.post(
            "/api/v1/fleet/login",
            json={"email": "admin@example.com", "password": "admin-password-1"},
            headers={"X-Forwarded-For": "10.9.9.9"},
        )
        assert session.status_code == 200, session.text
        token = session.json()["token"]
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        made = api.post("/api/v1/fleet/me/tokens", json={"name": "ci"}).json()
        listed = api.get("/api/v1/fleet/me/tokens").json()["tokens"]
        assert any(t["name"] == "ci" and t["id"] == made["id"] for t in listed)
        script = {"Authorization": f"Bearer {made['token']}"}
        assert api.get("/api/v1/fleet/me", headers=script).status_code == 200
        assert api.delete(f"/api/v1/fleet/me/tokens/{made['id']}").status_code == 200
        assert api.get("/api/v1/fleet/me", headers=script).status_code == 401
        assert api.delete("/api/v1/fleet/me/tokens/zzz").status_code == 404


def test_team_users_cannot_stream_other_users_tasks(
    live_server: RunningServer, admin_token: str
) -> None:
    world = build(live_server, admin_token)
    task = world.api.post(
        "/core/local-query-tasks",
        json={
            "querySpec": {
                "query": {"term": {"propertyName": "documentKind", "matchValue": "fleet:host"}},
                "options": ["CONTINUOUS", "EXPAND_CONTENT"],
            },
            "documentExpirationTimeMicros": 9223372036854775807,
        },
    )
    assert task.status_code == 202, task.text
    link = task.json()["documentSelfLink"]
    team = {"Authorization": f"Bearer {world.tokens['team_observer']}"}
    with httpx.Client(base_url=live_server.url) as client:
        refused = client.get(f"{link}/events", headers=team)
        assert refused.status_code == 404 and "no query task" in refused.json()["error"]
    url = live_server.url.replace("http", "ws", 1) + f"{link}/stream"
    token = world.tokens["team_observer"]
    with connect(f"{url}?token={token}") as socket:
        error = json.loads(socket.recv(timeout=10))
        assert error["type"] == "error" and "no query task" in error["error"]
    world.close()
