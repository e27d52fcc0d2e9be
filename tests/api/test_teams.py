"""Teams: CRUD, team enroll secrets (a host joins the team), transfer, per-team config."""

from __future__ import annotations

import json

import httpx

from tests.agent import Agent
from tests.conftest import login
from tests.server import RunningServer

TEAM_SECRET = "team-enroll-secret"


def test_teams_secrets_transfer_and_config(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        team = api.post(
            "/api/v1/fleet/teams",
            json={
                "name": "servers",
                "config": {
                    "schedule": {
                        "ports": {"query": "SELECT * FROM listening_ports", "interval": 300}
                    }
                },
            },
        )
        assert team.status_code == 201, team.text
        team_id = team.json()["team"]["id"]
        assert api.post("/api/v1/fleet/teams", json={"name": "servers"}).status_code == 409
        bad = api.post(
            "/api/v1/fleet/teams",
            json={"name": "x", "config": {"schedule": {"q": {"interval": 1}}}},
        )
        assert bad.status_code == 400 and "schedule.q.query" in bad.json()["error"]
        bad_sql = api.post(
            "/api/v1/fleet/teams",
            json={
                "name": "x",
                "config": {"schedule": {"q": {"query": "DROP TABLE t", "interval": 1}}},
            },
        )
        assert bad_sql.status_code == 400
        assert bad_sql.json()["error"].startswith("config: schedule.q.query: only read queries")
        secret = api.post(f"/api/v1/fleet/teams/{team_id}/secrets", json={"secret": TEAM_SECRET})
        assert secret.status_code == 201
        listed = api.get(f"/api/v1/fleet/teams/{team_id}/secrets").json()["secrets"]
        assert [s["secret"] for s in listed] == [TEAM_SECRET]
        member = Agent(agents_client, TEAM_SECRET, "t0", "tu0")
        member.enroll()
        outsider = Agent(agents_client, "test-enroll-secret", "t1", "tu1")
        outsider.enroll()
        hosts = {h["hostname"]: h for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
        assert hosts["t0"]["team_id"] == team_id and hosts["t1"]["team_id"] is None
        # per-team config additions reach only the team's hosts
        assert "ports" in member.post("config", {}).json()["schedule"]
        assert "ports" not in outsider.post("config", {}).json()["schedule"]
        team_hosts = api.get("/api/v1/fleet/hosts", params={"team_id": team_id}).json()
        assert [h["hostname"] for h in team_hosts["hosts"]] == ["t0"]
        # transfer
        moved = api.post(
            "/api/v1/fleet/hosts/transfer", json={"team_id": team_id, "hosts": [hosts["t1"]["id"]]}
        )
        assert moved.status_code == 200
        assert "ports" in outsider.post("config", {}).json()["schedule"]
        run = api.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT 1", "targets": [{"type": "team", "id": team_id}]},
        )
        assert run.json()["campaign"]["totals"]["targeted"] == 2
        missing = api.post("/api/v1/fleet/hosts/transfer", json={"team_id": None, "hosts": [999]})
        assert missing.status_code == 404
        # deleting the team: hosts stay, with no team; its secret stops working
        assert api.delete(f"/api/v1/fleet/teams/{team_id}").status_code == 200
        hosts = {h["hostname"]: h for h in api.get("/api/v1/fleet/hosts").json()["hosts"]}
        assert hosts["t0"]["team_id"] is None and hosts["t1"]["team_id"] is None
        assert Agent(agents_client, TEAM_SECRET, "t2", "tu2").enroll()["node_invalid"] is True
        assert api.get(f"/api/v1/fleet/teams/{team_id}").status_code == 404


def test_deleting_a_team_removes_its_roles_and_rescopes_its_members_tasks(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as api:
        doomed = api.post("/api/v1/fleet/teams", json={"name": "doomed"}).json()["team"]["id"]
        kept = api.post("/api/v1/fleet/teams", json={"name": "kept"}).json()["team"]["id"]
        created = api.post(
            "/api/v1/fleet/users",
            json={
                "email": "member@example.com",
                "password": "user-password-1",
                "global_role": None,
                "teams": [{"id": doomed, "role": "maintainer"}, {"id": kept, "role": "observer"}],
            },
        )
        assert created.status_code in (200, 201), created.text
        user_id = created.json()["user"]["id"]
        token = login(live_server, "member@example.com", "user-password-1")
        task = httpx.post(
            f"{live_server.url}/core/local-query-tasks",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "taskInfo": {"isDirect": False},
                "querySpec": {
                    "query": {
                        "occurance": "MUST_OCCUR",
                        "term": {"propertyName": "documentKind", "matchValue": "fleet:host"},
                    },
                    "options": ["CONTINUOUS"],
                },
            },
        )
        assert task.status_code == 202, task.text
        link = task.json()["documentSelfLink"]
        assert api.delete(f"/api/v1/fleet/teams/{doomed}").status_code == 200
        user = api.get(f"/api/v1/fleet/users/{user_id}").json()["user"]
        assert user["teams"] == [{"id": kept, "role": "observer"}]
        # the member's task restarted within the team left: as a task made now would be
        after = api.get(link).json()
        assert after["taskInfo"]["stage"] == "STARTED"
        assert after["scope"] != task.json()["scope"]
        fresh = httpx.post(
            f"{live_server.url}/core/local-query-tasks",
            headers={"Authorization": f"Bearer {token}"},
            json=json.loads(task.request.content),
        )
        assert fresh.status_code == 202, fresh.text
        assert after["scope"] == fresh.json()["scope"]
        # a new team (which SQLite may give the same id) grants the former member nothing
        again = api.post("/api/v1/fleet/teams", json={"name": "new"}).json()["team"]["id"]
        member = {"Authorization": f"Bearer {token}"}
        assert (
            httpx.get(f"{live_server.url}/api/v1/fleet/teams/{again}", headers=member).status_code
            == 404
        )
