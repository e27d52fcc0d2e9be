"""Which campaign entries a reader sees: everything with a global role; for a team-only
user, answers by the team their host had when answering, unanswered hosts by their team now."""

from __future__ import annotations

from typing import Any

from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.users import TeamRole, User
from fleetwatch.live.result_scope import EVERY_HOST, ResultScope


def user(global_role: str | None, teams: tuple[TeamRole, ...] = ()) -> User:
    return User(
        id=7, email="u@example.com", name="", global_role=global_role, teams=teams, created_at=0
    )


def host(host_id: int, team_id: int | None) -> HostState:
    return HostState(
        id=host_id,
        node_key_hash="",
        host_identifier=f"h{host_id}",
        uuid=f"u{host_id}",
        hostname=f"h{host_id}",
        platform="linux",
        team_id=team_id,
        enrolled_at=0.0,
        seen_time=None,
        detail_updated_at=None,
        distributed_interval=10,
        config_tls_refresh=60,
    )


HOSTS = {1: host(1, 1), 2: host(2, 2), 3: host(3, 1), 4: host(4, None)}
ENTRIES: list[dict[str, Any]] = [
    {"host_id": 1, "status": "complete", "team_id": 2},  # answered in team 2, moved since
    {"host_id": 2, "status": "complete", "team_id": 1},  # answered in team 1, moved since
    {"host_id": 3, "status": "pending"},  # not answered: in team 1 now
    {"host_id": 4, "status": "offline"},  # no team
    {"host_id": 5, "status": "pending"},  # deleted
]


def test_global_roles_see_every_entry() -> None:
    for role in ("admin", "maintainer", "observer"):
        scope = ResultScope.of(Access(user(role, (TeamRole(1, "observer"),))))
        assert scope == EVERY_HOST and scope.everything
        assert scope.filter(ENTRIES, HOSTS.get) == ENTRIES


def test_a_team_user_sees_answers_by_their_team_then_and_the_rest_by_their_team_now() -> None:
    scope = ResultScope.of(Access(user(None, (TeamRole(1, "maintainer"),))))
    assert scope.teams == frozenset({1})
    assert [e["host_id"] for e in scope.filter(ENTRIES, HOSTS.get)] == [2, 3]
    assert scope.keeps_answer({"team_id": 1}) and not scope.keeps_answer({"team_id": None})
    assert not scope.keeps_host(None) and not scope.keeps_host(HOSTS[4])


def test_a_user_without_teams_sees_no_entry() -> None:
    assert ResultScope.of(Access(user(None))).filter(ENTRIES, HOSTS.get) == []
