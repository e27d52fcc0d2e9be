"""Hosts API: filters, search, paging, status, one host, delete."""

from __future__ import annotations

import httpx

from tests.agent import Agent, enroll_many
from tests.conftest import login
from tests.server import RunningServer


def test_list_filter_search_page(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url) as client:
        enroll_many(client, "test-enroll-secret", 12)
        page0 = client.get("/api/v1/fleet/hosts", params={"per_page": 5}, headers=auth).json()
        page2 = client.get(
            "/api/v1/fleet/hosts", params={"per_page": 5, "page": 2}, headers=auth
        ).json()
        assert page0["count"] == 12 and len(page0["hosts"]) == 5 and len(page2["hosts"]) == 2
        beyond = client.get(
            "/api/v1/fleet/hosts", params={"per_page": 5, "page": 9}, headers=auth
        ).json()
        assert beyond["hosts"] == [] and beyond["count"] == 12
        found = client.get("/api/v1/fleet/hosts", params={"query": "HOST-1"}, headers=auth).json()
        assert sorted(h["hostname"] for h in found["hosts"]) == ["host-10", "host-11"]
        assert (
            client.get("/api/v1/fleet/hosts", params={"platform": "ubuntu"}, headers=auth).json()[
                "count"
            ]
            == 12
        )
        assert (
            client.get("/api/v1/fleet/hosts", params={"platform": "darwin"}, headers=auth).json()[
                "count"
            ]
            == 0
        )
        online = client.get("/api/v1/fleet/hosts", params={"status": "online"}, headers=auth)
        assert online.json()["count"] == 12
        offline = client.get("/api/v1/fleet/hosts", params={"status": "offline"}, headers=auth)
        assert offline.json()["count"] == 0
        desc = client.get(
            "/api/v1/fleet/hosts",
            params={"order_key": "hostname", "order_direction": "desc", "per_page": 1},
            headers=auth,
        ).json()
        assert desc["hosts"][0]["hostname"] == "host-11"
        host = page0["hosts"][0]
        for field in (
            "id",
            "hostname",
            "uuid",
            "platform",
            "status",
            "team_id",
            "labels",
            "seen_time",
            "os_version",
            "osquery_version",
            "cpu_brand",
            "memory",
            "hardware_model",
            "hardware_serial",
        ):
            assert field in host, field
        one = client.get(f"/api/v1/fleet/hosts/{host['id']}", headers=auth).json()["host"]
        assert one["uuid"] == host["uuid"]


def test_bad_parameters_and_unknown_hosts(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        for params in (
            {"status": "sleeping"},
            {"page": "-1"},
            {"per_page": "0"},
            {"per_page": "100000"},
            {"order_key": "password"},
            {"team_id": "x"},
        ):
            reply = client.get("/api/v1/fleet/hosts", params=params)
            assert reply.status_code == 400, params
            assert reply.json()["error"]
        for method in ("GET", "DELETE"):
            missing = client.request(method, "/api/v1/fleet/hosts/424242")
            assert missing.status_code == 404 and "no host" in missing.json()["error"]
        assert client.get("/api/v1/fleet/hosts/abc").status_code == 400
        assert client.get("/api/v1/fleet/hosts/424242/logs").status_code == 404


def test_team_users_read_only_the_logs_sent_while_the_host_was_theirs(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as admin,
        httpx.Client(base_url=live_server.url) as agents,
    ):
        team_a = admin.post("/api/v1/fleet/teams", json={"name": "a"}).json()["team"]["id"]
        team_b = admin.post("/api/v1/fleet/teams", json={"name": "b"}).json()["team"]["id"]
        secret_b = "team-b-enroll-secret"
        assert admin.post(
            f"/api/v1/fleet/teams/{team_b}/secrets", json={"secret": secret_b}
        ).is_success
        made = admin.post(
            "/api/v1/fleet/users",
            json={
                "email": "a-observer@example.com",
                "password": "observer-password-1",
                "global_role": None,
                "teams": [{"id": team_a, "role": "observer"}],
            },
        )
        assert made.status_code == 201, made.text
        agent = Agent(agents, secret_b, "db-01", "uuid-db-01")
        assert agent.enroll().get("node_key")
        host_id = admin.get("/api/v1/fleet/hosts").json()["hosts"][0]["id"]
        _send_status(agent, "while in team b")
        moved = admin.post(
            "/api/v1/fleet/hosts/transfer", json={"team_id": team_a, "hosts": [host_id]}
        )
        assert moved.is_success, moved.text
        _send_status(agent, "while in team a")
        token = login(live_server, "a-observer@example.com", "observer-password-1")
        team_view = admin.get(
            f"/api/v1/fleet/hosts/{host_id}/logs", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert [row["message"] for row in team_view["logs"]] == ["while in team a"]
        assert team_view["count"] == 1
        everything = admin.get(f"/api/v1/fleet/hosts/{host_id}/logs").json()
        assert sorted(row["message"] for row in everything["logs"]) == [
            "while in team a",
            "while in team b",
        ]


def _send_status(agent: Agent, message: str) -> None:
    line = {"severity": "0", "filename": "x.cpp", "line": "1", "message": message}
    reply = agent.post("log", {"log_type": "status", "data": [line]})
    assert reply.status_code == 200, reply.text
