"""Users' document scope: a team user sees exactly the documents of their teams, their own
campaigns and labels; a global observer or maintainer everything but other users' campaigns
and their results; a global admin has none."""

from __future__ import annotations

import time
from typing import Any

from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.users import TeamRole, User
from fleetwatch.live.scope import document_scope
from fleetwatch.query.matcher import compile_query
from tests.query.task_client import TaskClient, kind_query, task_body, user_client
from tests.server import RunningServer


def user(global_role: str | None, teams: tuple[TeamRole, ...] = ()) -> User:
    return User(
        id=7,
        email="u@example.com",
        name="",
        global_role=global_role,
        teams=teams,
        created_at=0.0,
    )


def doc(kind: str, **fields: Any) -> dict[str, Any]:
    return {"documentKind": kind, **fields}


CASES: list[tuple[dict[str, Any], bool]] = [
    (doc("fleet:host", team_id=1), True),
    (doc("fleet:host", team_id=3), True),
    (doc("fleet:host", team_id=2), False),
    (doc("fleet:host", team_id=None), False),
    (doc("fleet:host"), False),
    (doc("fleet:result", team_id=1, host_id=4, campaign_user_id=7), True),
    (doc("fleet:result", team_id=1, host_id=4, campaign_user_id=8), False),
    (doc("fleet:result", team_id=1, host_id=4), False),
    (doc("fleet:result", team_id=2, host_id=5, campaign_user_id=7), False),
    (doc("fleet:log", team_id=3), True),
    (doc("fleet:log", team_id=None), False),
    (doc("fleet:campaign", user_id=7), True),
    (doc("fleet:campaign", user_id=8), False),
    (doc("fleet:label", id=1), True),
    (doc("fleet:team", id=1), True),
    (doc("fleet:team", id=2), False),
    (doc("fleet:activity", team_id=1), False),
    (doc("fleet:activity", type="live_query", actor_id=7), False),
    (doc("fleet:campaign-targets", team_id=1), False),
    (doc("docs:notes", team_id=1), False),
    (doc("fleet:app-config"), False),
    (doc("fleet:policy-result", team_id=1, policy_id=1), True),
    (doc("fleet:policy-result", team_id=2, policy_id=1), False),
    (doc("fleet:policy", id=1, team_id=None), True),  # global: every user reads it
    (doc("fleet:policy", id=2, team_id=3), True),
    (doc("fleet:policy", id=3, team_id=2), False),
    (doc("fleet:policy", id=4), False),
]


def test_team_user_scope_matches_exactly_what_it_may_see() -> None:
    teams = (TeamRole(1, "observer"), TeamRole(3, "maintainer"))
    scope = document_scope(Access(user(None, teams)))
    assert scope is not None
    compiled = compile_query(scope)
    wrong = [d for d, visible in CASES if compiled.matches(d) != visible]
    assert not wrong


def test_a_global_admin_has_no_scope() -> None:
    assert document_scope(Access(user("admin", (TeamRole(1, "observer"),)))) is None


#: What a global observer or maintainer (user 7) may see: all but others' campaigns.
GLOBAL_CASES: list[tuple[dict[str, Any], bool]] = [
    (doc("fleet:host", team_id=2), True),
    (doc("fleet:host"), True),
    (doc("fleet:log", team_id=None), True),
    (doc("fleet:label", id=1), True),
    (doc("fleet:team", id=2), True),
    (doc("fleet:activity"), True),
    (doc("fleet:activity", type="created_label", actor_id=8), True),
    (doc("fleet:activity", type="live_query", actor_id=7, details={"query": "x"}), True),
    (doc("fleet:activity", type="live_query", actor_id=8, details={"query": "x"}), False),
    (doc("fleet:activity", type="live_query", actor_id=None), False),
    (doc("fleet:query", id=1), True),
    (doc("fleet:app-config"), True),
    (doc("docs:notes"), True),
    (doc("fleet:campaign", user_id=7, query="SELECT 1"), True),
    (doc("fleet:campaign", user_id=8, query="SELECT 1"), False),
    (doc("fleet:campaign", query="SELECT 1"), False),
    (doc("fleet:result", campaign_user_id=7, team_id=2), True),
    (doc("fleet:result", campaign_user_id=8, team_id=2), False),
    (doc("fleet:result", team_id=2), False),  # written before results named their creator
    (doc("fleet:campaign-targets", campaign_id=1), False),
]


def test_global_observers_and_maintainers_see_all_but_others_campaigns() -> None:
    for role in ("maintainer", "observer"):
        scope = document_scope(Access(user(role, (TeamRole(1, "observer"),))))
        assert scope is not None
        compiled = compile_query(scope)
        wrong = [d for d, visible in GLOBAL_CASES if compiled.matches(d) != visible]
        assert not wrong, role


def test_a_user_with_no_team_sees_only_labels_and_its_campaigns() -> None:
    scope = document_scope(Access(user(None)))
    assert scope is not None
    compiled = compile_query(scope)
    visible = [d for d, _ in CASES if compiled.matches(d)]
    assert visible == [
        doc("fleet:campaign", user_id=7),
        doc("fleet:label", id=1),
        doc("fleet:policy", id=1, team_id=None),
    ]


def test_team_users_watch_global_and_their_teams_policies(
    live_server: RunningServer, admin_token: str
) -> None:
    """A continuous query of a team observer over `fleet:policy`: its initial results (SQL)
    and its live count (the matcher) take global policies and its team's, not others'."""
    admin = TaskClient(live_server, admin_token)
    api = admin.http
    team1, team2 = (
        api.post("/api/v1/fleet/teams", json={"name": n}).json()["team"]["id"] for n in "ab"
    )

    def policy(name: str, team: int | None) -> str:
        path = "/api/v1/fleet/policies" if team is None else f"/api/v1/fleet/teams/{team}/policies"
        made = api.post(path, json={"name": name, "query": "SELECT 1"})
        assert made.status_code == 201, made.text
        return f"/fleet/policies/{made.json()['policy']['id']}"

    visible = {policy("global", None), policy("one", team1)}
    policy("two", team2)
    observer, _ = user_client(admin, "o@example.com", None, [{"id": team1, "role": "observer"}])
    try:
        q = kind_query("fleet:policy")
        direct = observer.create(task_body(q, direct=True))
        assert set(direct["results"]["documentLinks"]) == visible
        link = observer.create(task_body(q, "CONTINUOUS", "COUNT"))["documentSelfLink"]
        assert observer.get(link)["results"]["documentCount"] == 2
        policy("two-more", team2)
        policy("global-more", None)
        policy("one-more", team1)
        deadline = time.monotonic() + 10
        while observer.get(link)["results"]["documentCount"] != 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        results = observer.get(link)["results"]
        assert results["documentCount"] == 4
        assert results["continuousResults"]["documentCountAdded"] == 2
    finally:
        observer.close()
        admin.close()
