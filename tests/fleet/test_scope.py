"""Team users' document scope: exactly the documents of their teams, their own campaigns and
labels; a global role has none."""

from __future__ import annotations

from typing import Any

from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.scope import document_scope
from fleetwatch.fleet.users import TeamRole, User
from fleetwatch.query.matcher import compile_query


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
    (doc("fleet:result", team_id=1, host_id=4), True),
    (doc("fleet:result", team_id=2, host_id=5), False),
    (doc("fleet:log", team_id=3), True),
    (doc("fleet:log", team_id=None), False),
    (doc("fleet:campaign", user_id=7), True),
    (doc("fleet:campaign", user_id=8), False),
    (doc("fleet:label", id=1), True),
    (doc("fleet:team", id=1), True),
    (doc("fleet:team", id=2), False),
    (doc("fleet:activity", team_id=1), False),
    (doc("fleet:campaign-targets", team_id=1), False),
    (doc("docs:notes", team_id=1), False),
    (doc("fleet:app-config"), False),
]


def test_team_user_scope_matches_exactly_what_it_may_see() -> None:
    teams = (TeamRole(1, "observer"), TeamRole(3, "maintainer"))
    scope = document_scope(Access(user(None, teams)))
    assert scope is not None
    compiled = compile_query(scope)
    wrong = [d for d, visible in CASES if compiled.matches(d) != visible]
    assert not wrong


def test_global_roles_have_no_scope() -> None:
    for role in ("admin", "maintainer", "observer"):
        assert document_scope(Access(user(role, (TeamRole(1, "observer"),)))) is None


def test_a_user_with_no_team_sees_only_labels_and_its_campaigns() -> None:
    scope = document_scope(Access(user(None)))
    assert scope is not None
    compiled = compile_query(scope)
    visible = [d for d, _ in CASES if compiled.matches(d)]
    assert visible == [doc("fleet:campaign", user_id=7), doc("fleet:label", id=1)]
