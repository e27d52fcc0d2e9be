"""The permission matrix: every route of the app against every role, and anonymous.

Roles: a global admin, maintainer and observer, and an admin, maintainer and observer of
team 1. Team 1 has host A, team 2 host B, host C has no team. A team user asking for
something outside its teams gets 404 (ids do not leak), not 403. `test_matrix_covers_every_route`
fails when a route of the app (method and path, WebSockets included) has no row here.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.sync.client import connect

from fleetwatch.api.auth import SESSION_COOKIE
from fleetwatch.app import create_app
from fleetwatch.config import Settings
from fleetwatch.fleet.login_limits import LoginLimiter
from tests.agent import Agent
from tests.conftest import login
from tests.server import RunningServer

S1 = "team-one-enroll-secret"
S2 = "team-two-enroll-secret"

ROLES = ["admin", "maintainer", "observer", "team_admin", "team_maintainer", "team_observer"]
TEAM_ROLES = ["team_admin", "team_maintainer", "team_observer"]
WHO = [*ROLES, "anonymous"]
FAR = 9223372036854775807
HOSTS_QUERY = {"term": {"propertyName": "documentKind", "matchValue": "fleet:host"}}


@dataclass
class World:
    server: RunningServer
    api: httpx.Client  # as admin
    tokens: dict[str, str]
    users: dict[str, int]
    host_a: int
    host_b: int
    host_c: int
    team1: int
    team2: int
    observer_query: int
    plain_query: int
    agents: httpx.Client
    counter: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def as_role(self, role: str) -> httpx.Client:
        token = self.tokens.get(role, self.tokens["admin"])  # anonymous: made by the admin
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def close(self) -> None:
        self.api.close()
        self.agents.close()


def build(server: RunningServer, admin_token: str) -> World:
    api = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
    )
    team1 = api.post("/api/v1/fleet/teams", json={"name": "one"}).json()["team"]["id"]
    team2 = api.post("/api/v1/fleet/teams", json={"name": "two"}).json()["team"]["id"]
    api.post(f"/api/v1/fleet/teams/{team1}/secrets", json={"secret": S1})
    api.post(f"/api/v1/fleet/teams/{team2}/secrets", json={"secret": S2})
    agents = httpx.Client(base_url=server.url)
    for secret, name in ((S1, "A"), (S2, "B"), ("test-enroll-secret", "C")):
        Agent(agents, secret, name, f"uuid-{name}").enroll()
    hosts = {h["hostname"]: h["id"] for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
    specs: dict[str, dict[str, Any]] = {
        "maintainer": {"global_role": "maintainer"},
        "observer": {"global_role": "observer"},
        "team_admin": {"global_role": None, "teams": [{"id": team1, "role": "admin"}]},
        "team_maintainer": {"global_role": None, "teams": [{"id": team1, "role": "maintainer"}]},
        "team_observer": {"global_role": None, "teams": [{"id": team1, "role": "observer"}]},
    }
    tokens = {"admin": admin_token}
    users = {"admin": api.get("/api/v1/fleet/me").json()["user"]["id"]}
    for role, spec in specs.items():
        email = f"{role}@example.com"
        made = api.post(
            "/api/v1/fleet/users", json={"email": email, "password": "user-password-1", **spec}
        )
        assert made.status_code == 201, made.text
        users[role] = made.json()["user"]["id"]
        tokens[role] = login(server, email, "user-password-1")
    observer_query = api.post(
        "/api/v1/fleet/queries", json={"name": "obs", "query": "SELECT 1", "observer_can_run": True}
    ).json()["query"]["id"]
    plain_query = api.post(
        "/api/v1/fleet/queries", json={"name": "plain", "query": "SELECT 2"}
    ).json()["query"]["id"]
    return World(
        server,
        api,
        tokens,
        users,
        hosts["A"],
        hosts["B"],
        hosts["C"],
        team1,
        team2,
        observer_query,
        plain_query,
        agents,
    )


# --- what a row asks, and helpers that make fresh objects for destructive calls -------------


@dataclass
class Call:
    path: str
    body: Any = None
    #: Authenticate with the UI's session cookie instead of the bearer header.
    cookie: bool = False
    #: A token made for this call (the call revokes it), instead of the role's own.
    fresh_token: bool = False


Make = Callable[[World, str], Call]


@dataclass
class Row:
    name: str
    method: str  # an HTTP method, or WS
    route: str  # the app's route, as registered
    make: Make
    expected: dict[str, int]


def codes(
    admin: int,
    maintainer: int,
    observer: int,
    team_admin: int,
    team_maintainer: int,
    team_observer: int,
    anonymous: int = 401,
) -> dict[str, int]:
    return dict(
        zip(
            WHO,
            [admin, maintainer, observer, team_admin, team_maintainer, team_observer, anonymous],
            strict=True,
        )
    )


def every(code: int, anonymous: int = 401) -> dict[str, int]:
    return codes(code, code, code, code, code, code, anonymous)


def global_only(code: int, team: int = 403) -> dict[str, int]:
    return codes(code, code, code, team, team, team)


def at(path: str, body: Any = None) -> Make:
    return lambda w, role: Call(path, body)


def fresh_host(w: World, team: int | None) -> int:
    name = w.unique("tmp-host-")
    Agent(w.agents, S1 if team else "test-enroll-secret", name, f"u-{name}").enroll()
    host_id: int = next(
        h["id"]
        for h in w.api.get("/api/v1/fleet/hosts", params={"query": name}).json()["hosts"]
        if h["hostname"] == name
    )
    return host_id


def fresh_label(w: World) -> int:
    body = {"name": w.unique("label-"), "query": "SELECT 1"}
    label_id: int = w.api.post("/api/v1/fleet/labels", json=body).json()["label"]["id"]
    return label_id


def fresh_query(w: World) -> int:
    body = {"name": w.unique("query-"), "query": "SELECT 3"}
    query_id: int = w.api.post("/api/v1/fleet/queries", json=body).json()["query"]["id"]
    return query_id


def fresh_user(w: World) -> int:
    body = {"email": f"{w.unique('user-')}@example.com", "password": "user-password-1"}
    user_id: int = w.api.post("/api/v1/fleet/users", json=body).json()["user"]["id"]
    return user_id


def fresh_team(w: World) -> int:
    team_id: int = w.api.post("/api/v1/fleet/teams", json={"name": w.unique("team-")}).json()[
        "team"
    ]["id"]
    return team_id


def fresh_secret(w: World, team: int | None) -> str:
    path = "/api/v1/fleet/secrets" if team is None else f"/api/v1/fleet/teams/{team}/secrets"
    secret: str = w.api.post(path, json={"secret": w.unique("permissions-secret-")}).json()[
        "secret"
    ]["secret"]
    return secret


def fresh_policy(w: World, team: int | None = None) -> str:
    """A new policy's path (a global one, or of `team` under the team's path)."""
    base = "/api/v1/fleet/policies" if team is None else f"/api/v1/fleet/teams/{team}/policies"
    body = {"name": w.unique("policy-"), "query": "SELECT 1"}
    policy_id: int = w.api.post(base, json=body).json()["policy"]["id"]
    return f"{base}/{policy_id}"


def policy_hook(w: World) -> str:
    """A new global policy's new webhook, by path."""
    path = fresh_policy(w)
    hook_id = w.api.post(f"{path}/webhooks", json={"url": HOOK}).json()["webhook"]["id"]
    return f"{path}/webhooks/{hook_id}"


def own_campaign(w: World, role: str) -> int:
    """A campaign the role started (an observer_can_run query on host A, which all see)."""
    with w.as_role(role) as client:
        reply = client.post(
            "/api/v1/fleet/queries/run",
            json={"query_id": w.observer_query, "targets": [{"type": "host", "id": w.host_a}]},
        )
    assert reply.status_code == 200, reply.text
    campaign_id: int = reply.json()["campaign_id"]
    return campaign_id


def admin_campaign(w: World) -> int:
    return own_campaign(w, "admin")


def stopped_campaign(w: World, role: str) -> int:
    """A campaign the role started and stopped (a re-run needs it to be over)."""
    campaign_id = own_campaign(w, role)
    with w.as_role(role) as client:
        stopped = client.post(f"/api/v1/fleet/campaigns/{campaign_id}/stop")
    assert stopped.status_code == 200, stopped.text
    return campaign_id


def admin_task(w: World, base: str) -> str:
    body = {
        "querySpec": {"query": HOSTS_QUERY, "options": ["CONTINUOUS"]},
        "documentExpirationTimeMicros": FAR,
    }
    reply = w.api.post(base, json=body)
    assert reply.status_code == 202, reply.text
    link: str = reply.json()["documentSelfLink"]
    return link


def own_task(w: World, role: str, base: str) -> str:
    with w.as_role(role) as client:
        body = {
            "querySpec": {"query": HOSTS_QUERY, "options": ["CONTINUOUS"]},
            "documentExpirationTimeMicros": FAR,
        }
        reply = client.post(base, json=body)
    assert reply.status_code == 202, reply.text
    link: str = reply.json()["documentSelfLink"]
    return link


HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    """HOOK is on loopback, which webhooks may call only when allowed."""
    return server_settings.model_copy(update={"outbound_allow": "127.0.0.0/8"})


def admin_subscription(w: World, base: str) -> tuple[str, int]:
    link = admin_task(w, base)
    row = w.api.post(f"{link}/subscriptions", json={"reference": HOOK}).json()
    return link, int(row["id"])


def admin_page(w: World) -> str:
    body = {"taskInfo": {"isDirect": True}, "querySpec": {"query": HOSTS_QUERY, "resultLimit": 1}}
    page: str = w.api.post("/core/local-query-tasks", json=body).json()["results"]["nextPageLink"]
    return page


def password_of(role: str) -> str:
    """The password of the role's user (the admin's for anonymous): a login session sends it
    to create an API token."""
    return "admin-password-1" if role in ("admin", "anonymous") else "user-password-1"


def new_token(w: World, role: str, name: str) -> dict[str, Any]:
    """A new API token of the role's user (the admin's for anonymous): `token` and `id`."""
    with w.as_role(role) as client:
        made = client.post(
            "/api/v1/fleet/me/tokens", json={"name": name, "password": password_of(role)}
        )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def own_token(w: World, role: str) -> str:
    """The id of a new API token of the role's user (the admin's for anonymous)."""
    return str(new_token(w, role, "matrix")["id"])


def fresh_doc(w: World) -> str:
    doc_id = w.unique("doc-")
    assert w.api.post("/docs/notes", json={"documentSelfLink": doc_id}).status_code == 200
    return doc_id


# --- the rows ----------------------------------------------------------------------------------

RUN = "/api/v1/fleet/queries/run"
CAMPAIGN = "/api/v1/fleet/campaigns/{campaign_id}"
SESSION_ONLY = codes(200, 200, 200, 200, 200, 200, 200)
#: Another user's query task (or campaign): only a global admin sees it; others get 404.
ADMIN_OR_OWNER = codes(200, 404, 404, 404, 404, 404)

ROWS: list[Row] = [
    # --- operations, docs and the agent API: not role based ---------------------------------
    Row("healthz", "GET", "/healthz", at("/healthz"), every(200, 200)),
    Row("openapi", "GET", "/openapi.json", at("/openapi.json"), every(200, 200)),
    Row("swagger", "GET", "/docs", at("/docs"), every(200, 200)),
    Row(
        "swagger oauth",
        "GET",
        "/docs/oauth2-redirect",
        at("/docs/oauth2-redirect"),
        every(200, 200),
    ),
    Row("redoc", "GET", "/redoc", at("/redoc"), every(200, 200)),
    Row("metrics", "GET", "/metrics", at("/metrics"), codes(200, 403, 403, 403, 403, 403)),
    *[
        Row(
            f"agent {name} with a bad node key",
            "POST",
            f"{prefix}/{name}",
            at(f"{prefix}/{name}", {"node_key": "not-a-key", "enroll_secret": "wrong"}),
            every(code, code),
        )
        for prefix in ("/api/v1/osquery", "/api/osquery")
        for name, code in (
            ("enroll", 401),
            ("config", 401),
            ("log", 401),
            ("distributed/read", 401),
            ("distributed/write", 401),
        )
    ],
    # --- the browser UI (the session cookie authenticates its pages) --------------------------
    Row("UI root", "GET", "/", lambda w, r: Call("/", cookie=True), every(303, 303)),
    Row("UI index", "GET", "/ui", lambda w, r: Call("/ui", cookie=True), every(303, 303)),
    Row("UI login page", "GET", "/ui/login", at("/ui/login"), every(200, 200)),
    Row(
        "UI page",
        "GET",
        "/ui/{name}",
        lambda w, r: Call("/ui/hosts", cookie=True),
        every(200, 303),
    ),
    Row(
        "UI host page",
        "GET",
        "/ui/hosts/{host_id}",
        lambda w, r: Call(f"/ui/hosts/{w.host_a}", cookie=True),
        every(200, 303),
    ),
    Row(
        "UI session from a token",
        "POST",
        "/ui/session",
        lambda w, r: Call("/ui/session", {"token": w.tokens.get(r, "not-a-token")}),
        every(200, 401),
    ),
    Row(
        "UI logout",
        "DELETE",
        "/ui/session",
        lambda w, r: Call("/ui/session", fresh_token=True),
        every(204, 204),
    ),
    Row("static asset", "GET", "/static", at("/static/favicon.svg"), every(200, 200)),
    # --- session --------------------------------------------------------------------------
    Row(
        "login",
        "POST",
        "/api/v1/fleet/login",
        at("/api/v1/fleet/login", {"email": "observer@example.com", "password": "user-password-1"}),
        SESSION_ONLY,
    ),
    Row(
        "logout",
        "POST",
        "/api/v1/fleet/logout",
        lambda w, r: Call("/api/v1/fleet/logout", fresh_token=True),
        every(200),
    ),
    Row("me", "GET", "/api/v1/fleet/me", at("/api/v1/fleet/me"), every(200)),
    Row("tokens", "GET", "/api/v1/fleet/me/tokens", at("/api/v1/fleet/me/tokens"), every(200)),
    Row(
        "new token",
        "POST",
        "/api/v1/fleet/me/tokens",
        lambda w, r: Call("/api/v1/fleet/me/tokens", {"name": "ci", "password": password_of(r)}),
        every(201),
    ),
    Row(
        "revoke own token",
        "DELETE",
        "/api/v1/fleet/me/tokens/{token_id}",
        lambda w, r: Call(f"/api/v1/fleet/me/tokens/{own_token(w, r)}"),
        every(200),
    ),
    Row(
        "revoke another user's token",
        "DELETE",
        "/api/v1/fleet/me/tokens/{token_id}",
        lambda w, r: Call(f"/api/v1/fleet/me/tokens/{own_token(w, 'observer')}"),
        codes(404, 404, 200, 404, 404, 404),
    ),
    # --- users ------------------------------------------------------------------------------
    Row(
        "users",
        "GET",
        "/api/v1/fleet/users",
        at("/api/v1/fleet/users"),
        codes(200, 403, 403, 403, 403, 403),
    ),
    Row(
        "create user",
        "POST",
        "/api/v1/fleet/users",
        lambda w, r: Call(
            "/api/v1/fleet/users",
            {"email": f"{w.unique('new-')}@example.com", "password": "user-password-9"},
        ),
        codes(201, 403, 403, 403, 403, 403),
    ),
    Row(
        "own user",
        "GET",
        "/api/v1/fleet/users/{user_id}",
        lambda w, r: Call(f"/api/v1/fleet/users/{w.users.get(r, 1)}"),
        every(200),
    ),
    Row(
        "another user",
        "GET",
        "/api/v1/fleet/users/{user_id}",
        lambda w, r: Call(f"/api/v1/fleet/users/{fresh_user(w)}"),
        codes(200, 403, 403, 403, 403, 403),
    ),
    Row(
        "rename self",
        "PATCH",
        "/api/v1/fleet/users/{user_id}",
        lambda w, r: Call(f"/api/v1/fleet/users/{w.users.get(r, 1)}", {"name": "me"}),
        every(200),
    ),
    Row(
        "change another user",
        "PATCH",
        "/api/v1/fleet/users/{user_id}",
        lambda w, r: Call(f"/api/v1/fleet/users/{fresh_user(w)}", {"name": "them"}),
        codes(200, 403, 403, 403, 403, 403),
    ),
    Row(
        "promote self",
        "PATCH",
        "/api/v1/fleet/users/{user_id}",
        lambda w, r: Call(f"/api/v1/fleet/users/{w.users.get(r, 1)}", {"global_role": "admin"}),
        codes(200, 403, 403, 403, 403, 403),
    ),
    Row(
        "delete user",
        "DELETE",
        "/api/v1/fleet/users/{user_id}",
        lambda w, r: Call(f"/api/v1/fleet/users/{fresh_user(w)}"),
        codes(200, 403, 403, 403, 403, 403),
    ),
    # --- hosts ------------------------------------------------------------------------------
    Row("list hosts", "GET", "/api/v1/fleet/hosts", at("/api/v1/fleet/hosts"), every(200)),
    Row(
        "host in my team",
        "GET",
        "/api/v1/fleet/hosts/{host_id}",
        lambda w, r: Call(f"/api/v1/fleet/hosts/{w.host_a}"),
        every(200),
    ),
    Row(
        "host in another team",
        "GET",
        "/api/v1/fleet/hosts/{host_id}",
        lambda w, r: Call(f"/api/v1/fleet/hosts/{w.host_b}"),
        global_only(200, 404),
    ),
    Row(
        "host with no team",
        "GET",
        "/api/v1/fleet/hosts/{host_id}",
        lambda w, r: Call(f"/api/v1/fleet/hosts/{w.host_c}"),
        global_only(200, 404),
    ),
    Row(
        "logs of my team's host",
        "GET",
        "/api/v1/fleet/hosts/{host_id}/logs",
        lambda w, r: Call(f"/api/v1/fleet/hosts/{w.host_a}/logs"),
        every(200),
    ),
    Row(
        "logs of another team's host",
        "GET",
        "/api/v1/fleet/hosts/{host_id}/logs",
        lambda w, r: Call(f"/api/v1/fleet/hosts/{w.host_b}/logs"),
        global_only(200, 404),
    ),
    Row(
        "delete a team host",
        "DELETE",
        "/api/v1/fleet/hosts/{host_id}",
        lambda w, r: Call(f"/api/v1/fleet/hosts/{fresh_host(w, 1)}"),
        codes(200, 200, 403, 200, 200, 403),
    ),
    Row(
        "delete another team's host",
        "DELETE",
        "/api/v1/fleet/hosts/{host_id}",
        lambda w, r: Call(f"/api/v1/fleet/hosts/{fresh_host(w, None)}"),
        codes(200, 200, 403, 404, 404, 404),
    ),
    Row(
        "transfer within my team",
        "POST",
        "/api/v1/fleet/hosts/transfer",
        lambda w, r: Call(
            "/api/v1/fleet/hosts/transfer", {"team_id": w.team1, "hosts": [w.host_a]}
        ),
        codes(200, 200, 403, 200, 200, 403),
    ),
    Row(
        "transfer another team's host",
        "POST",
        "/api/v1/fleet/hosts/transfer",
        lambda w, r: Call(
            "/api/v1/fleet/hosts/transfer", {"team_id": w.team2, "hosts": [w.host_b]}
        ),
        codes(200, 200, 403, 404, 404, 404),
    ),
    # --- labels -----------------------------------------------------------------------------
    Row("list labels", "GET", "/api/v1/fleet/labels", at("/api/v1/fleet/labels"), every(200)),
    Row(
        "a label",
        "GET",
        "/api/v1/fleet/labels/{label_id}",
        at("/api/v1/fleet/labels/1"),
        every(200),
    ),
    Row(
        "a label's hosts",
        "GET",
        "/api/v1/fleet/labels/{label_id}/hosts",
        at("/api/v1/fleet/labels/1/hosts"),
        every(200),
    ),
    Row(
        "create label",
        "POST",
        "/api/v1/fleet/labels",
        lambda w, r: Call("/api/v1/fleet/labels", {"name": w.unique("new-"), "query": "SELECT 1"}),
        codes(201, 201, 403, 403, 403, 403),
    ),
    Row(
        "change label",
        "PATCH",
        "/api/v1/fleet/labels/{label_id}",
        lambda w, r: Call(f"/api/v1/fleet/labels/{fresh_label(w)}", {"description": "d"}),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "delete label",
        "DELETE",
        "/api/v1/fleet/labels/{label_id}",
        lambda w, r: Call(f"/api/v1/fleet/labels/{fresh_label(w)}"),
        codes(200, 200, 403, 403, 403, 403),
    ),
    # --- policies ---------------------------------------------------------------------------
    Row("list policies", "GET", "/api/v1/fleet/policies", at("/api/v1/fleet/policies"), every(200)),
    Row(
        "a global policy",
        "GET",
        "/api/v1/fleet/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w)),
        every(200),
    ),
    Row(
        "another team's policy by id",
        "GET",
        "/api/v1/fleet/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w, w.team2).replace(f"teams/{w.team2}/", "")),
        codes(200, 200, 200, 404, 404, 404),
    ),
    Row(
        "a policy's hosts",
        "GET",
        "/api/v1/fleet/policies/{policy_id}/hosts",
        lambda w, r: Call(f"{fresh_policy(w)}/hosts?response=fail"),
        every(200),
    ),
    Row(
        "create global policy",
        "POST",
        "/api/v1/fleet/policies",
        lambda w, r: Call(
            "/api/v1/fleet/policies", {"name": w.unique("new-"), "query": "SELECT 1"}
        ),
        codes(201, 201, 403, 403, 403, 403),
    ),
    Row(
        "change global policy",
        "PATCH",
        "/api/v1/fleet/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w), {"description": "d"}),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "delete global policy",
        "DELETE",
        "/api/v1/fleet/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w)),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "a policy's webhooks",
        "GET",
        "/api/v1/fleet/policies/{policy_id}/webhooks",
        lambda w, r: Call(f"{fresh_policy(w)}/webhooks"),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "add a policy webhook",
        "POST",
        "/api/v1/fleet/policies/{policy_id}/webhooks",
        lambda w, r: Call(f"{fresh_policy(w)}/webhooks", {"url": HOOK}),
        codes(201, 201, 403, 403, 403, 403),
    ),
    Row(
        "delete a policy webhook",
        "DELETE",
        "/api/v1/fleet/policies/{policy_id}/webhooks/{webhook_id}",
        lambda w, r: Call(policy_hook(w)),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "my team's policies",
        "GET",
        "/api/v1/fleet/teams/{team_id}/policies",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team1}/policies"),
        every(200),
    ),
    Row(
        "another team's policies",
        "GET",
        "/api/v1/fleet/teams/{team_id}/policies",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team2}/policies"),
        codes(200, 200, 200, 404, 404, 404),
    ),
    Row(
        "create my team's policy",
        "POST",
        "/api/v1/fleet/teams/{team_id}/policies",
        lambda w, r: Call(
            f"/api/v1/fleet/teams/{w.team1}/policies",
            {"name": w.unique("new-"), "query": "SELECT 1"},
        ),
        codes(201, 201, 403, 201, 201, 403),
    ),
    Row(
        "create another team's policy",
        "POST",
        "/api/v1/fleet/teams/{team_id}/policies",
        lambda w, r: Call(
            f"/api/v1/fleet/teams/{w.team2}/policies",
            {"name": w.unique("new-"), "query": "SELECT 1"},
        ),
        codes(201, 201, 403, 404, 404, 404),
    ),
    Row(
        "my team's policy",
        "GET",
        "/api/v1/fleet/teams/{team_id}/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w, w.team1)),
        every(200),
    ),
    Row(
        "another team's policy",
        "GET",
        "/api/v1/fleet/teams/{team_id}/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w, w.team2)),
        codes(200, 200, 200, 404, 404, 404),
    ),
    Row(
        "change my team's policy",
        "PATCH",
        "/api/v1/fleet/teams/{team_id}/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w, w.team1), {"description": "d"}),
        codes(200, 200, 403, 200, 200, 403),
    ),
    Row(
        "delete my team's policy",
        "DELETE",
        "/api/v1/fleet/teams/{team_id}/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w, w.team1)),
        codes(200, 200, 403, 200, 200, 403),
    ),
    Row(
        "delete another team's policy",
        "DELETE",
        "/api/v1/fleet/teams/{team_id}/policies/{policy_id}",
        lambda w, r: Call(fresh_policy(w, w.team2)),
        codes(200, 200, 403, 404, 404, 404),
    ),
    # --- teams and enroll secrets -----------------------------------------------------------
    Row("list teams", "GET", "/api/v1/fleet/teams", at("/api/v1/fleet/teams"), every(200)),
    Row(
        "my team",
        "GET",
        "/api/v1/fleet/teams/{team_id}",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team1}"),
        every(200),
    ),
    Row(
        "another team",
        "GET",
        "/api/v1/fleet/teams/{team_id}",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team2}"),
        global_only(200, 404),
    ),
    Row(
        "create team",
        "POST",
        "/api/v1/fleet/teams",
        lambda w, r: Call("/api/v1/fleet/teams", {"name": w.unique("made-")}),
        codes(201, 403, 403, 403, 403, 403),
    ),
    Row(
        "change my team",
        "PATCH",
        "/api/v1/fleet/teams/{team_id}",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team1}", {"description": "d"}),
        codes(200, 403, 403, 200, 403, 403),
    ),
    Row(
        "change another team",
        "PATCH",
        "/api/v1/fleet/teams/{team_id}",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team2}", {"description": "d"}),
        codes(200, 403, 403, 404, 404, 404),
    ),
    Row(
        "delete team",
        "DELETE",
        "/api/v1/fleet/teams/{team_id}",
        lambda w, r: Call(f"/api/v1/fleet/teams/{fresh_team(w)}"),
        codes(200, 403, 403, 403, 403, 403),
    ),
    Row(
        "my team's secrets",
        "GET",
        "/api/v1/fleet/teams/{team_id}/secrets",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team1}/secrets"),
        codes(200, 403, 403, 200, 403, 403),
    ),
    Row(
        "another team's secrets",
        "GET",
        "/api/v1/fleet/teams/{team_id}/secrets",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team2}/secrets"),
        codes(200, 403, 403, 404, 404, 404),
    ),
    Row(
        "add a team secret",
        "POST",
        "/api/v1/fleet/teams/{team_id}/secrets",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team1}/secrets", {}),
        codes(201, 403, 403, 201, 403, 403),
    ),
    Row(
        "revoke a team secret",
        "DELETE",
        "/api/v1/fleet/teams/{team_id}/secrets/{secret}",
        lambda w, r: Call(f"/api/v1/fleet/teams/{w.team1}/secrets/{fresh_secret(w, w.team1)}"),
        codes(200, 403, 403, 200, 403, 403),
    ),
    Row(
        "global secrets",
        "GET",
        "/api/v1/fleet/secrets",
        at("/api/v1/fleet/secrets"),
        codes(200, 403, 403, 403, 403, 403),
    ),
    Row(
        "add a global secret",
        "POST",
        "/api/v1/fleet/secrets",
        at("/api/v1/fleet/secrets", {}),
        codes(201, 403, 403, 403, 403, 403),
    ),
    Row(
        "revoke a global secret",
        "DELETE",
        "/api/v1/fleet/secrets/{secret}",
        lambda w, r: Call(f"/api/v1/fleet/secrets/{fresh_secret(w, None)}"),
        codes(200, 403, 403, 403, 403, 403),
    ),
    # --- agent config and server settings ---------------------------------------------------
    Row(
        "agent config", "GET", "/api/v1/fleet/config", at("/api/v1/fleet/config"), global_only(200)
    ),
    Row(
        "replace agent config",
        "PUT",
        "/api/v1/fleet/config",
        at("/api/v1/fleet/config", {"options": {}}),
        codes(200, 403, 403, 403, 403, 403),
    ),
    Row(
        "server settings",
        "PATCH",
        "/api/v1/fleet/config",
        at("/api/v1/fleet/config", {"server_settings": {"live_query_disabled": False}}),
        codes(200, 403, 403, 403, 403, 403),
    ),
    # --- saved queries ----------------------------------------------------------------------
    Row("saved queries", "GET", "/api/v1/fleet/queries", at("/api/v1/fleet/queries"), every(200)),
    Row(
        "a saved query",
        "GET",
        "/api/v1/fleet/queries/{query_id}",
        lambda w, r: Call(f"/api/v1/fleet/queries/{w.plain_query}"),
        every(200),
    ),
    Row(
        "save a query",
        "POST",
        "/api/v1/fleet/queries",
        lambda w, r: Call("/api/v1/fleet/queries", {"name": w.unique("s-"), "query": "SELECT 1"}),
        codes(201, 201, 403, 403, 403, 403),
    ),
    Row(
        "change a query",
        "PATCH",
        "/api/v1/fleet/queries/{query_id}",
        lambda w, r: Call(f"/api/v1/fleet/queries/{fresh_query(w)}", {"description": "d"}),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "delete a query",
        "DELETE",
        "/api/v1/fleet/queries/{query_id}",
        lambda w, r: Call(f"/api/v1/fleet/queries/{fresh_query(w)}"),
        codes(200, 200, 403, 403, 403, 403),
    ),
    # --- live queries -----------------------------------------------------------------------
    Row(
        "run new SQL on all",
        "POST",
        RUN,
        at(RUN, {"query": "SELECT 1", "targets": [{"type": "all"}]}),
        codes(200, 200, 403, 200, 200, 403),
    ),
    Row(
        "run an observer query",
        "POST",
        RUN,
        lambda w, r: Call(RUN, {"query_id": w.observer_query, "targets": [{"type": "all"}]}),
        every(200),
    ),
    Row(
        "run a plain saved query",
        "POST",
        RUN,
        lambda w, r: Call(RUN, {"query_id": w.plain_query, "targets": [{"type": "all"}]}),
        codes(200, 200, 403, 200, 200, 403),
    ),
    Row(
        "target another team's host",
        "POST",
        RUN,
        lambda w, r: Call(
            RUN, {"query_id": w.observer_query, "targets": [{"type": "host", "id": w.host_b}]}
        ),
        codes(200, 200, 200, 400, 400, 400),
    ),
    Row("campaigns", "GET", "/api/v1/fleet/campaigns", at("/api/v1/fleet/campaigns"), every(200)),
    Row(
        "own campaign",
        "GET",
        CAMPAIGN,
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{own_campaign(w, r)}"),
        every(200),
    ),
    Row(
        "another user's campaign",
        "GET",
        CAMPAIGN,
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{own_campaign(w, 'observer')}"),
        codes(200, 404, 200, 404, 404, 404),
    ),
    Row(
        "own campaign's results",
        "GET",
        CAMPAIGN + "/results",
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{own_campaign(w, r)}/results?format=csv"),
        every(200),
    ),
    Row(
        "another user's results",
        "GET",
        CAMPAIGN + "/results",
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{admin_campaign(w)}/results"),
        codes(200, 404, 404, 404, 404, 404),
    ),
    Row(
        "own campaign's events",
        "GET",
        CAMPAIGN + "/events",
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{own_campaign(w, r)}/events"),
        every(200),
    ),
    Row(
        "another user's events",
        "GET",
        CAMPAIGN + "/events",
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{admin_campaign(w)}/events"),
        codes(200, 404, 404, 404, 404, 404),
    ),
    Row(
        "stop own campaign",
        "POST",
        CAMPAIGN + "/stop",
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{own_campaign(w, r)}/stop"),
        every(200),
    ),
    Row(
        "stop another user's campaign",
        "POST",
        CAMPAIGN + "/stop",
        lambda w, r: Call(f"/api/v1/fleet/campaigns/{admin_campaign(w)}/stop"),
        codes(200, 404, 404, 404, 404, 404),
    ),
    Row(
        "re-run own campaign",
        "POST",
        CAMPAIGN + "/rerun",
        lambda w, r: Call(
            f"/api/v1/fleet/campaigns/{stopped_campaign(w, r)}/rerun", {"hosts": "all"}
        ),
        every(201),
    ),
    Row(
        "re-run another user's campaign",
        "POST",
        CAMPAIGN + "/rerun",
        lambda w, r: Call(
            f"/api/v1/fleet/campaigns/{stopped_campaign(w, 'admin')}/rerun", {"hosts": "all"}
        ),
        codes(201, 404, 404, 404, 404, 404),
    ),
    Row(
        "diff own campaigns",
        "GET",
        CAMPAIGN + "/diff",
        lambda w, r: Call(
            f"/api/v1/fleet/campaigns/{own_campaign(w, r)}/diff?against={own_campaign(w, r)}"
        ),
        every(200),
    ),
    Row(
        "diff against another user's campaign",
        "GET",
        CAMPAIGN + "/diff",
        lambda w, r: Call(
            f"/api/v1/fleet/campaigns/{own_campaign(w, r)}/diff?against={admin_campaign(w)}"
        ),
        codes(200, 404, 404, 404, 404, 404),
    ),
    Row(
        "own campaign's WebSocket",
        "WS",
        "/api/v1/fleet/results/websocket",
        lambda w, r: Call(f"/api/v1/fleet/results/websocket?campaign_id={own_campaign(w, r)}"),
        every(200),
    ),
    Row(
        "another user's WebSocket",
        "WS",
        "/api/v1/fleet/results/websocket",
        lambda w, r: Call(f"/api/v1/fleet/results/websocket?campaign_id={admin_campaign(w)}"),
        codes(200, 404, 404, 404, 404, 404),
    ),
    # --- destinations: their delivery state, for who runs campaigns fleet-wide ---------------
    Row(
        "destinations",
        "GET",
        "/api/v1/fleet/destinations",
        at("/api/v1/fleet/destinations"),
        codes(200, 200, 403, 403, 403, 403),
    ),
    # --- audit ------------------------------------------------------------------------------
    Row(
        "activities",
        "GET",
        "/api/v1/fleet/activities",
        at("/api/v1/fleet/activities"),
        global_only(200),
    ),
    # --- user documents: global roles; writes need maintainer ------------------------------
    Row("list documents", "GET", "/docs/{collection}", at("/docs/notes"), global_only(200)),
    Row(
        "a document",
        "GET",
        "/docs/{collection}/{doc_id}",
        lambda w, r: Call(f"/docs/notes/{fresh_doc(w)}"),
        global_only(200),
    ),
    Row(
        "create a document",
        "POST",
        "/docs/{collection}",
        at("/docs/notes", {"text": "hi"}),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "replace a document",
        "PUT",
        "/docs/{collection}/{doc_id}",
        lambda w, r: Call(f"/docs/notes/{fresh_doc(w)}", {"text": "new"}),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "change a document",
        "PATCH",
        "/docs/{collection}/{doc_id}",
        lambda w, r: Call(f"/docs/notes/{fresh_doc(w)}", {"text": "new"}),
        codes(200, 200, 403, 403, 403, 403),
    ),
    Row(
        "delete a document",
        "DELETE",
        "/docs/{collection}/{doc_id}",
        lambda w, r: Call(f"/docs/notes/{fresh_doc(w)}"),
        codes(200, 200, 403, 403, 403, 403),
    ),
    # --- continuous queries (every user; tasks are private to their owner and admins) -------
    Row(
        "query page of another user's task",
        "GET",
        "/core/query-page/{page_id}",
        lambda w, r: Call(admin_page(w)),
        ADMIN_OR_OWNER,
    ),
    Row(
        "index stats",
        "GET",
        "/core/document-index/stats",
        at("/core/document-index/stats"),
        global_only(200),
    ),
]


def task_rows(base: str) -> list[Row]:
    """The rows of one task factory: the user's own tasks, and the admin's."""
    task = base + "/{task_id}"
    subs = task + "/subscriptions"
    body = {
        "querySpec": {"query": HOSTS_QUERY, "options": ["CONTINUOUS"]},
        "documentExpirationTimeMicros": FAR,
    }
    cancel = {"taskInfo": {"stage": "CANCELLED"}}
    return [
        Row(f"{base}: create", "POST", base, at(base, body), every(202)),
        Row(f"{base}: list", "GET", base, at(base), every(200)),
        Row(f"{base}: own task", "GET", task, lambda w, r: Call(own_task(w, r, base)), every(200)),
        Row(
            f"{base}: another user's task",
            "GET",
            task,
            lambda w, r: Call(admin_task(w, base)),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: cancel own task",
            "PATCH",
            task,
            lambda w, r: Call(own_task(w, r, base), cancel),
            every(200),
        ),
        Row(
            f"{base}: cancel another user's task",
            "PATCH",
            task,
            lambda w, r: Call(admin_task(w, base), cancel),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: delete own task",
            "DELETE",
            task,
            lambda w, r: Call(own_task(w, r, base)),
            every(200),
        ),
        Row(
            f"{base}: delete another user's task",
            "DELETE",
            task,
            lambda w, r: Call(admin_task(w, base)),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: own task's events",
            "GET",
            task + "/events",
            lambda w, r: Call(own_task(w, r, base) + "/events"),
            every(200),
        ),
        Row(
            f"{base}: another user's events",
            "GET",
            task + "/events",
            lambda w, r: Call(admin_task(w, base) + "/events"),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: own task's stream",
            "WS",
            task + "/stream",
            lambda w, r: Call(own_task(w, r, base) + "/stream"),
            every(200),
        ),
        Row(
            f"{base}: another user's stream",
            "WS",
            task + "/stream",
            lambda w, r: Call(admin_task(w, base) + "/stream"),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: subscribe a webhook",
            "POST",
            subs,
            lambda w, r: Call(own_task(w, r, base) + "/subscriptions", {"reference": HOOK}),
            every(200),
        ),
        Row(
            f"{base}: webhook on another user's task",
            "POST",
            subs,
            lambda w, r: Call(admin_task(w, base) + "/subscriptions", {"reference": HOOK}),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: another user's webhooks",
            "GET",
            subs,
            lambda w, r: Call(admin_task(w, base) + "/subscriptions"),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: unsubscribe by reference",
            "DELETE",
            subs,
            lambda w, r: Call(
                admin_subscription(w, base)[0] + "/subscriptions", {"reference": HOOK}
            ),
            ADMIN_OR_OWNER,
        ),
        Row(
            f"{base}: unsubscribe by id",
            "DELETE",
            subs + "/{subscription_id}",
            lambda w, r: Call("{}/subscriptions/{}".format(*admin_subscription(w, base))),
            ADMIN_OR_OWNER,
        ),
    ]


ROWS += task_rows("/core/local-query-tasks") + task_rows("/core/query-tasks")


# --- running the rows --------------------------------------------------------------------------


def http_code(client: httpx.Client, method: str, call: Call, token: str | None) -> int:
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if token is not None and call.cookie:
        cookies[SESSION_COOKIE] = token
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    client.cookies.clear()
    kwargs: dict[str, Any] = {"headers": headers, "cookies": cookies}
    if call.body is not None:
        kwargs["json"] = call.body
    with client.stream(method, call.path, **kwargs) as reply:
        if reply.status_code >= 400:
            reply.read()
            assert "error" in reply.json(), (method, call.path, reply.text)
        return reply.status_code  # a stream (SSE) is closed without reading it


def ws_code(server: RunningServer, call: Call, token: str | None) -> int:
    url = server.url.replace("http", "ws", 1) + call.path
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with connect(url, additional_headers=headers) as ws:
        if token is None:
            ws.send(json.dumps({"type": "auth", "data": {}}))
        first = json.loads(ws.recv(timeout=20))
    if first.get("type") != "error":
        return 200
    text = first.get("error") or first.get("data", {}).get("error", "")
    if "authentication required" in text or "token" in text:
        return 401
    return 404 if text.startswith("no ") else 403


def test_permission_matrix(live_server: RunningServer, admin_token: str) -> None:
    world = build(live_server, admin_token)
    failures = []
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        for row in ROWS:
            for who in WHO:
                call = row.make(world, who)
                token = None if who == "anonymous" else world.tokens[who]
                if token is not None and call.fresh_token:
                    token = new_token(world, who, "x")["token"]
                if row.method == "WS":
                    code = ws_code(live_server, call, token)
                else:
                    code = http_code(client, row.method, call, token)
                if code != row.expected[who]:
                    failures.append(f"{row.name} ({row.method} {call.path}) as {who}: {code}")
    world.close()
    assert not failures, "\n".join(failures)


def app_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route; WebSockets as WS, mounts (static files) as GET."""
    for route in routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, prefix + route.path
        elif isinstance(route, WebSocketRoute):
            yield "WS", prefix + route.path
        elif isinstance(route, Mount):
            yield "GET", prefix + route.path
        elif hasattr(route, "original_router"):  # FastAPI's included router
            yield from app_routes(
                route.original_router.routes, prefix + route.include_context.prefix
            )
        else:
            raise AssertionError(f"a route the matrix cannot classify: {route!r}")


def test_matrix_covers_every_route(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routes = set(app_routes(app.routes))
    covered = {(row.method, row.route) for row in ROWS}
    assert len(routes) > 90  # the walk found the included routers
    assert sorted(routes - covered) == [], "routes missing from the permission matrix"
    assert sorted(covered - routes) == [], "rows for routes the app does not have"
    for row in ROWS:
        assert set(row.expected) == set(WHO), row.name


def test_team_user_sees_only_its_hosts_and_campaigns(
    live_server: RunningServer, admin_token: str
) -> None:
    world = build(live_server, admin_token)
    with httpx.Client(base_url=live_server.url) as client:
        team = {"Authorization": f"Bearer {world.tokens['team_maintainer']}"}
        listed = client.get("/api/v1/fleet/hosts", headers=team).json()
        assert [h["id"] for h in listed["hosts"]] == [world.host_a] and listed["count"] == 1
        # a label's members and count are those the team user may see
        hosts = [world.host_a, world.host_b, world.host_c]
        label = world.api.post("/api/v1/fleet/labels", json={"name": "m", "hosts": hosts}).json()
        path = f"/api/v1/fleet/labels/{label['label']['id']}"
        assert label["label"]["host_count"] == 3
        assert client.get(path, headers=team).json()["label"]["host_count"] == 1
        listed_labels = client.get("/api/v1/fleet/labels", headers=team).json()["labels"]
        assert [lab["host_count"] for lab in listed_labels if lab["name"] == "m"] == [1]
        members = client.get(f"{path}/hosts", headers=team).json()["hosts"]
        assert [h["id"] for h in members] == [world.host_a]
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
    # A limiter that does not refill during the test: failed logins hash a password each, and
    # on a loaded machine eleven of them can take longer than one refill (6 s).
    live_server.services.login_limiter = LoginLimiter(per_minute=1e-9)
    with httpx.Client(base_url=live_server.url) as client:
        codes_ = [
            client.post(
                "/api/v1/fleet/login",
                json={"email": "admin@example.com", "password": "wrong-guess"},
            ).status_code
            for _ in range(11)
        ]
        assert codes_[:10] == [401] * 10 and codes_[10] == 429
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
    # the session sends its password to make a token: from the address that is not limited
    unlimited = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.9.9.9"}
    with httpx.Client(base_url=live_server.url, headers=unlimited) as api:
        made = api.post(
            "/api/v1/fleet/me/tokens", json={"name": "ci", "password": "admin-password-1"}
        ).json()
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
    link = admin_task(world, "/core/local-query-tasks")
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
