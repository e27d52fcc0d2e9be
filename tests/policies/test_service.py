"""Policy service over a real server: a deleted host's or team's answers leave the index
and the counts, and a moved host's answers follow it (SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx
import pytest

from fleetwatch.fleet.host_state import HostState
from fleetwatch.policies.model import result_link
from tests.agent import Agent
from tests.api.test_policies import checkin, counts
from tests.conftest import login
from tests.server import RunningServer


def _stored(server: RunningServer, link: str) -> dict[str, object] | None:
    found = server.call(server.services.index.get(link))
    return None if found is None else dict(found.body)


def _team_of(server: RunningServer, link: str) -> object:
    """The team an answer document names (it must exist)."""
    body = _stored(server, link)
    assert body is not None, link
    return body["team_id"]


def test_deleted_hosts_and_teams_take_their_answers(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        team = api.post("/api/v1/fleet/teams", json={"name": "t"}).json()["team"]["id"]
        a, b, c = (Agent(agents_client, "test-enroll-secret", f"d{i}", f"du{i}") for i in range(3))
        for agent in (a, b, c):
            agent.enroll()
        ids = {h["hostname"]: h["id"] for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
        moved = api.post(
            "/api/v1/fleet/hosts/transfer", json={"team_id": team, "hosts": [ids["d0"], ids["d2"]]}
        )
        assert moved.status_code == 200, moved.text
        glob = api.post("/api/v1/fleet/policies", json={"name": "g", "query": "SELECT 1"}).json()[
            "policy"
        ]["id"]
        own = api.post(
            f"/api/v1/fleet/teams/{team}/policies", json={"name": "t", "query": "SELECT 1"}
        ).json()["policy"]["id"]
        checkin(a, {glob: [], own: [{"1": "1"}]})
        checkin(b, {glob: [{"1": "1"}]})
        checkin(c, {glob: [{"1": "1"}], own: []})
        glob_path, own_path = (
            f"/api/v1/fleet/policies/{glob}",
            f"/api/v1/fleet/teams/{team}/policies/{own}",
        )
        assert counts(api, glob_path) == (2, 1, 0)
        assert counts(api, own_path) == (1, 1, 0)

        # a deleted host's answers go, and with them its counts
        assert api.delete(f"/api/v1/fleet/hosts/{ids['d1']}").status_code == 200
        assert _stored(live_server, result_link(glob, ids["d1"])) is None
        assert counts(api, glob_path) == (1, 1, 0)

        # a host moved out of the team: its answer to the team's policy goes, its answer
        # to the global one now names its new team (no team)
        assert _team_of(live_server, result_link(glob, ids["d2"])) == team
        api.post("/api/v1/fleet/hosts/transfer", json={"team_id": None, "hosts": [ids["d2"]]})
        assert _stored(live_server, result_link(own, ids["d2"])) is None
        assert _team_of(live_server, result_link(glob, ids["d2"])) is None
        assert counts(api, own_path) == (1, 0, 0)

        # a deleted team: its policies go with their answers and documents; its hosts' answers
        # to global policies stay, naming no team
        assert api.delete(f"/api/v1/fleet/teams/{team}").status_code == 200
        assert _stored(live_server, result_link(own, ids["d0"])) is None
        assert _stored(live_server, f"/fleet/policies/{own}") is None
        assert own not in live_server.services.policies.book
        assert _team_of(live_server, result_link(glob, ids["d0"])) is None
        assert counts(api, glob_path) == (1, 1, 0)


def test_counts_of_team_and_platform_policies_walk_no_hosts(
    live_server: RunningServer, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts come from tallies kept as answers and hosts change: reading them walks no
    host list, for a team's policy, a platform's, and a team user's view of a global one."""
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        team = api.post("/api/v1/fleet/teams", json={"name": "w"}).json()["team"]["id"]
        agents = [Agent(agents_client, "test-enroll-secret", f"w{i}", f"wu{i}") for i in range(4)]
        for agent in agents:
            agent.enroll()
        ids = {h["hostname"]: h["id"] for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
        api.post(
            "/api/v1/fleet/hosts/transfer", json={"team_id": team, "hosts": [ids["w0"], ids["w1"]]}
        )
        made = {
            name: api.post(path, json={"name": name, "query": "SELECT 1", **extra}).json()[
                "policy"
            ]["id"]
            for name, path, extra in (
                ("team", f"/api/v1/fleet/teams/{team}/policies", {}),
                ("linux", "/api/v1/fleet/policies", {"platform": "linux"}),
                ("darwin", "/api/v1/fleet/policies", {"platform": "darwin"}),
                ("all", "/api/v1/fleet/policies", {}),
            )
        }
        checkin(agents[0], {made["team"]: [], made["linux"]: [{"1": "1"}], made["all"]: []})
        checkin(agents[2], {made["linux"]: [], made["all"]: [{"1": "1"}]})
        user = api.post(
            "/api/v1/fleet/users",
            json={
                "email": "tw@example.com",
                "password": "user-password-1",
                "global_role": None,
                "teams": [{"id": team, "role": "observer"}],
            },
        )
        assert user.status_code == 201, user.text
        token = login(live_server, "tw@example.com", "user-password-1")
        walks = []
        hosts = live_server.services.hosts
        real_all = hosts.all

        def counting_all() -> list[HostState]:
            walks.append(1)
            return real_all()

        monkeypatch.setattr(hosts, "all", counting_all)
        with httpx.Client(
            base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}
        ) as observer:
            assert counts(api, f"/api/v1/fleet/teams/{team}/policies/{made['team']}") == (0, 1, 1)
            # the test agents report the platform "ubuntu" (linux); nothing is darwin
            assert counts(api, f"/api/v1/fleet/policies/{made['linux']}") == (1, 1, 2)
            assert counts(api, f"/api/v1/fleet/policies/{made['darwin']}") == (0, 0, 0)
            assert counts(api, f"/api/v1/fleet/policies/{made['all']}") == (1, 1, 2)
            # the team's observer counts only the team's hosts (w0 failing, w1 unknown)
            assert counts(observer, f"/api/v1/fleet/policies/{made['all']}") == (0, 1, 1)
            listed = observer.get("/api/v1/fleet/policies").json()["policies"]
            assert {p["id"]: p["unknown_host_count"] for p in listed}[made["all"]] == 1
        assert walks == []
