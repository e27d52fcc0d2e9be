"""The live query kill switch over HTTP: PATCH /api/v1/fleet/config (admin only), a clear
403 while it is on, an activity per change, and the value kept across a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from fleetwatch.config import Settings
from tests.agent import Agent
from tests.conftest import login
from tests.server import running_server
from tests.services import PostgresServer

RUN = {"query": "SELECT 1", "targets": [{"type": "all"}]}


def switch(api: httpx.Client, disabled: object) -> httpx.Response:
    return api.patch(
        "/api/v1/fleet/config", json={"server_settings": {"live_query_disabled": disabled}}
    )


def test_kill_switch_at_runtime_survives_a_restart(server_settings: Settings) -> None:
    with running_server(server_settings) as server:
        admin = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}
        )
        with httpx.Client(base_url=server.url) as agents:
            Agent(agents, "test-enroll-secret", "h1", "u1").enroll()
        made = admin.post(
            "/api/v1/fleet/users",
            json={
                "email": "m@example.com",
                "password": "user-password-1",
                "global_role": "maintainer",
            },
        )
        assert made.status_code == 201
        maintainer = httpx.Client(
            base_url=server.url,
            headers={
                "Authorization": f"Bearer {login(server, 'm@example.com', 'user-password-1')}"
            },
        )
        shown = admin.get("/api/v1/fleet/config").json()
        assert shown["server_settings"] == {"live_query_disabled": False}
        assert "config" in shown and "effective" in shown  # the agent config is still there
        assert maintainer.post("/api/v1/fleet/queries/run", json=RUN).status_code == 200

        refused = switch(maintainer, True)
        assert refused.status_code == 403 and "admin" in refused.json()["error"]
        reply = switch(admin, True)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"server_settings": {"live_query_disabled": True}}
        blocked = maintainer.post("/api/v1/fleet/queries/run", json=RUN)
        assert blocked.status_code == 403
        assert "live queries are disabled by the administrator" in blocked.json()["error"]
        assert admin.post("/api/v1/fleet/queries/run", json=RUN).status_code == 403

        bad = switch(admin, "off")
        assert bad.status_code == 400
        assert "server_settings.live_query_disabled" in bad.json()["error"]
        unknown = admin.patch("/api/v1/fleet/config", json={"options": {}})
        assert unknown.status_code == 400 and "unknown field" in unknown.json()["error"]
        assert switch(admin, True).status_code == 200  # no change, no activity

        feed = admin.get("/api/v1/fleet/activities").json()["activities"]
        edits = [a for a in feed if a["type"] == "edited_server_settings"]
        assert len(edits) == 1
        assert edits[0]["details"] == {"changes": {"live_query_disabled": [False, True]}}
        assert edits[0]["actor_email"] == "admin@example.com"
        admin.close()
        maintainer.close()

    with running_server(server_settings) as server:
        admin = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}
        )
        assert admin.get("/api/v1/fleet/config").json()["server_settings"] == {
            "live_query_disabled": True
        }
        assert admin.post("/api/v1/fleet/queries/run", json=RUN).status_code == 403
        assert switch(admin, False).status_code == 200
        assert admin.post("/api/v1/fleet/queries/run", json=RUN).status_code == 200
        admin.close()


def test_stored_value_overrides_the_setting(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"live_queries_disabled": True})
    with running_server(settings) as server:
        admin = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {login(server)}"}
        )
        with httpx.Client(base_url=server.url) as agents:
            Agent(agents, "test-enroll-secret", "h1", "u1").enroll()
        assert admin.get("/api/v1/fleet/config").json()["server_settings"] == {
            "live_query_disabled": True
        }
        assert admin.post("/api/v1/fleet/queries/run", json=RUN).status_code == 403
        assert switch(admin, False).status_code == 200
        assert admin.post("/api/v1/fleet/queries/run", json=RUN).status_code == 200
        admin.close()


def test_every_node_of_a_cluster_sees_the_switch(
    pg_server: PostgresServer, redis_url: str, tmp_path: Path
) -> None:
    shared = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        database_url=pg_server.create_database("cluster_kill_switch"),
        redis_url=redis_url,
        enroll_secret="test-enroll-secret",
        admin_email="admin@example.com",
        admin_password="admin-password-1",
        distributed_hold=1.0,
    )
    with running_server(shared) as node_a, running_server(shared) as node_b:
        token = login(node_a)
        auth = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=node_a.url, headers=auth) as api_a,
            httpx.Client(base_url=node_b.url, headers=auth) as api_b,
        ):
            with httpx.Client(base_url=node_b.url) as agents:
                Agent(agents, "test-enroll-secret", "h1", "u1").enroll()
            assert switch(api_a, True).status_code == 200
            # node B learns it from the change log (a broadcast, or its poll of the log)
            deadline = time.monotonic() + 30
            while api_b.get("/api/v1/fleet/config").json()["server_settings"] != {
                "live_query_disabled": True
            }:
                assert time.monotonic() < deadline, "node B never saw the change"
                time.sleep(0.05)
            blocked = api_b.post("/api/v1/fleet/queries/run", json=RUN)
            assert blocked.status_code == 403
            assert "disabled by the administrator" in blocked.json()["error"]
