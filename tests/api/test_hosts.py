"""Hosts API: filters, search, paging, status, one host, delete."""

from __future__ import annotations

import httpx

from tests.agent import Agent
from tests.server import RunningServer


def enroll_many(client: httpx.Client, n: int) -> list[Agent]:
    agents = []
    for i in range(n):
        agent = Agent(client, "test-enroll-secret", f"host-{i:02d}", f"uuid-{i:02d}")
        agent.enroll()
        agents.append(agent)
    return agents


def test_list_filter_search_page(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url) as client:
        enroll_many(client, 12)
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
