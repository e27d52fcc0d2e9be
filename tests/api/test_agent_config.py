"""The agent config API: validation naming the problem, the 1 MiB cap, and what agents get."""

from __future__ import annotations

import httpx
import pytest

from tests.agent import Agent
from tests.server import RunningServer

GOOD = {
    "options": {"logger_tls_period": 5, "host_identifier": "uuid"},
    "schedule": {"procs": {"query": "SELECT pid, name FROM processes;", "interval": 60}},
    "packs": {
        "ops": {
            "queries": {
                "users": {"query": "SELECT * FROM users;", "interval": 300, "snapshot": True}
            },
            "discovery": ["SELECT 1 FROM os_version WHERE platform = 'ubuntu';"],
        }
    },
    "decorators": {
        "load": ["SELECT uuid AS host_uuid FROM system_info;"],
        "interval": {"3600": ["SELECT total_seconds AS uptime FROM uptime;"]},
    },
}


def test_put_config_reaches_agents(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url) as client:
        reply = client.put("/api/v1/fleet/config", json=GOOD, headers=auth)
        assert reply.status_code == 200, reply.text
        assert reply.json()["config"] == GOOD
        agent = Agent(client, "test-enroll-secret", "h", "u")
        agent.enroll()
        config = agent.post("config", {}).json()
        assert config["schedule"] == GOOD["schedule"]
        assert config["packs"] == GOOD["packs"]
        assert config["options"]["logger_tls_period"] == 5  # the operator's value wins
        assert config["options"]["distributed_interval"] == 1  # fleetwatch's default added
        got = client.get("/api/v1/fleet/config", headers=auth).json()
        assert got["config"] == GOOD and got["effective"]["node_invalid"] is False


@pytest.mark.parametrize(
    "config, message",
    [
        ([], "must be a JSON object"),
        ({"schedul": {}}, "unknown top-level key(s) schedul"),
        ({"options": {"x": [1]}}, "options.x"),
        ({"schedule": {"q": {"interval": 5}}}, "schedule.q.query"),
        ({"schedule": {"q": {"query": "SELECT 1", "interval": "60"}}}, "schedule.q.interval"),
        ({"schedule": {"q": {"query": "SELECT 1", "interval": 0}}}, "between 1"),
        (
            {"schedule": {"q": {"query": "SELECT 1", "interval": 1, "snapshot": "yes"}}},
            "schedule.q.snapshot",
        ),
        ({"schedule": {"q": {"query": "SELECT 1", "interval": 1, "shard": 101}}}, "shard"),
        (
            {"packs": {"p": {"queries": {"q": {"query": "", "interval": 1}}}}},
            "packs.p.queries.q.query",
        ),
        ({"packs": {"p": {"discovery": "SELECT 1"}}}, "packs.p.discovery"),
        ({"decorators": {"load": "SELECT 1"}}, "decorators.load"),
        ({"decorators": {"interval": {"hourly": ["SELECT 1"]}}}, "decorators.interval.hourly"),
        (
            {"schedule": {"q": {"query": "SELECT * FORM processes", "interval": 60}}},
            'schedule.q.query: syntax error: near "FORM": syntax error (line 1, column 10)',
        ),
    ],
)
def test_invalid_configs_name_the_problem(
    live_server: RunningServer, admin_token: str, config: object, message: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        reply = client.put("/api/v1/fleet/config", json=config)
        assert reply.status_code == 400
        assert message in reply.json()["error"]
        # nothing stored
        assert client.get("/api/v1/fleet/config").json()["config"]["schedule"] == {}


def test_config_over_one_mib_is_refused(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    huge = {
        "schedule": {
            f"q{i}": {"query": "SELECT '" + "x" * 1000 + "';", "interval": 60} for i in range(1100)
        }
    }
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        reply = client.put("/api/v1/fleet/config", json=huge)
        assert reply.status_code == 400
        assert "1 MiB" in reply.json()["error"]
