"""The agent API over a real socket, as osquery speaks it, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.agent import Agent
from tests.server import RunningServer

SECRET = "test-enroll-secret"


@pytest.fixture
def client(live_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=16) as c:
        yield c


def enrolled(client: httpx.Client, name: str = "web-01", uuid: str = "uuid-1") -> Agent:
    agent = Agent(client, SECRET, name, uuid)
    reply = agent.enroll()
    assert isinstance(reply["node_key"], str) and len(reply["node_key"]) >= 22
    return agent


def answer_details(agent: Agent) -> None:
    """Answer the detail queries a new host receives, so later reads have nothing pending."""
    queries = agent.post("distributed/read", {}).json()["queries"]
    assert queries
    agent.post(
        "distributed/write",
        {
            "queries": {name: [] for name in queries},
            "statuses": {name: 0 for name in queries},
            "messages": {name: "" for name in queries},
        },
    )


def assert_json_object(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json")
    body = orjson.loads(response.content)
    assert isinstance(body, dict)
    return body


# --- enroll ---------------------------------------------------------------------------------


def test_enroll_returns_a_strong_node_key(client: httpx.Client) -> None:
    a = enrolled(client)
    b = enrolled(client, "web-02", "uuid-2")
    assert a.node_key != b.node_key
    # token_urlsafe(32): 256 bits of randomness, 43 characters
    assert len(a.node_key) >= 43


@pytest.mark.parametrize(
    "body, message",
    [
        ({"enroll_secret": "wrong", "host_identifier": "h"}, "invalid enroll secret"),
        ({"host_identifier": "h"}, "enroll_secret is missing"),
        ({"enroll_secret": 5, "host_identifier": "h"}, "enroll_secret is missing"),
    ],
)
def test_enroll_with_a_bad_secret_is_node_invalid(
    client: httpx.Client, body: dict[str, object], message: str
) -> None:
    reply = client.post("/api/v1/osquery/enroll", json=body)
    data = assert_json_object(reply)
    assert data["node_invalid"] is True
    assert message in str(data["error"])
    assert "node_key" not in data


@pytest.mark.parametrize(
    "body, message",
    [
        ({"enroll_secret": SECRET}, "host_identifier"),
        ({"enroll_secret": SECRET, "host_identifier": ""}, "host_identifier"),
        ({"enroll_secret": SECRET, "host_identifier": "h", "host_details": []}, "host_details"),
        ({"enroll_secret": SECRET, "host_identifier": "x" * 300}, "255"),
    ],
)
def test_enroll_with_bad_fields_is_a_json_400(
    client: httpx.Client, body: dict[str, object], message: str
) -> None:
    reply = client.post("/api/v1/osquery/enroll", json=body)
    assert reply.status_code == 400
    assert message in str(assert_json_object(reply)["error"])


def test_reenroll_keeps_the_host_and_revokes_the_old_key(
    client: httpx.Client, admin_token: str
) -> None:
    first = enrolled(client)
    old_key = first.node_key
    second = enrolled(client)  # same host_identifier / uuid: osquery lost its key
    assert second.node_key != old_key
    hosts = client.get(
        "/api/v1/fleet/hosts", headers={"Authorization": f"Bearer {admin_token}"}
    ).json()
    assert hosts["count"] == 1
    stale = client.post("/api/v1/osquery/config", json={"node_key": old_key})
    assert assert_json_object(stale)["node_invalid"] is True
    fresh = second.post("config", {})
    assert "options" in assert_json_object(fresh)


def test_revoked_secret_stops_enrollment(client: httpx.Client, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    added = client.post("/api/v1/fleet/secrets", json={"secret": "second-secret"}, headers=auth)
    assert added.status_code == 201
    agent = Agent(client, "second-secret", "h2", "uuid-h2")
    assert "node_key" in agent.enroll()
    assert client.delete("/api/v1/fleet/secrets/second-secret", headers=auth).status_code == 200
    again = Agent(client, "second-secret", "h3", "uuid-h3").enroll()
    assert again["node_invalid"] is True
    # the host enrolled with it keeps working
    assert "options" in agent.post("config", {}).json()


# --- node keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["config", "log", "distributed/read", "distributed/write"])
def test_unknown_node_key_is_always_node_invalid(client: httpx.Client, path: str) -> None:
    for body in ({"node_key": "nope"}, {}, {"node_key": 7}):
        reply = client.post(f"/api/v1/osquery/{path}", json=body)
        assert assert_json_object(reply)["node_invalid"] is True


def test_node_key_from_authorization_header(client: httpx.Client) -> None:
    agent = enrolled(client)
    reply = client.post(
        "/api/v1/osquery/config", json={}, headers={"Authorization": f"NodeKey {agent.node_key}"}
    )
    assert "options" in assert_json_object(reply)


def test_deleted_host_gets_node_invalid_and_can_reenroll(
    client: httpx.Client, admin_token: str
) -> None:
    agent = enrolled(client)
    auth = {"Authorization": f"Bearer {admin_token}"}
    host_id = client.get("/api/v1/fleet/hosts", headers=auth).json()["hosts"][0]["id"]
    assert client.delete(f"/api/v1/fleet/hosts/{host_id}", headers=auth).status_code == 200
    assert agent.post("distributed/read", {}).json()["node_invalid"] is True
    agent.enroll()
    assert "options" in agent.post("config", {}).json()


# --- config ---------------------------------------------------------------------------------


def test_config_is_an_osquery_config(client: httpx.Client) -> None:
    config = assert_json_object(enrolled(client).post("config", {}))
    assert config["node_invalid"] is False
    options = config["options"]
    assert isinstance(options, dict)
    assert options["distributed_interval"] == 1
    assert isinstance(options["logger_tls_period"], int)
    assert isinstance(config["schedule"], dict)
    assert "decorators" in config


# --- log ------------------------------------------------------------------------------------


def event_row(counter: int, action: str = "added", pid: str = "1") -> dict[str, object]:
    return {
        "name": "pack_ops_procs",
        "hostIdentifier": "web-01",
        "calendarTime": "Mon Oct  6 12:00:00 2025 UTC",
        "unixTime": 1759752000,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "decorations": {"host_uuid": "uuid-1"},
        "columns": {"pid": pid, "name": "sshd"},
        "action": action,
    }


def stored_logs(client: httpx.Client, token: str, **params: str) -> dict[str, object]:
    auth = {"Authorization": f"Bearer {token}"}
    host_id = client.get("/api/v1/fleet/hosts", headers=auth).json()["hosts"][0]["id"]
    reply = client.get(f"/api/v1/fleet/hosts/{host_id}/logs", headers=auth, params=params)
    assert reply.status_code == 200, reply.text
    data: dict[str, object] = reply.json()
    return data


@pytest.mark.parametrize("compressed", [False, True])
def test_result_logs_every_format_and_resend_stored_once(
    client: httpx.Client, admin_token: str, compressed: bool
) -> None:
    agent = enrolled(client)
    batch = {
        "log_type": "result",
        "data": [
            event_row(1),
            event_row(2, "removed"),
            {
                "diffResults": {"added": [{"pid": "9"}], "removed": [{"pid": "8"}]},
                "name": "batch_q",
                "hostIdentifier": "web-01",
                "calendarTime": "x",
                "unixTime": 1,
                "epoch": 0,
                "counter": 1,
                "numerics": False,
            },
            {
                "snapshot": [{"pid": "1"}, {"pid": "2"}],
                "action": "snapshot",
                "name": "snap_q",
                "hostIdentifier": "web-01",
                "calendarTime": "x",
                "unixTime": 5,
                "epoch": 0,
                "counter": 0,
                "numerics": False,
            },
        ],
    }
    for _ in range(2):  # osquery's at-least-once delivery resends a batch
        reply = agent.post("log", batch, gzip_body=compressed)
        assert reply.status_code == 200 and reply.json() == {}
    logs = stored_logs(client, admin_token, type="result")
    assert logs["count"] == 6
    rows = logs["logs"]
    assert isinstance(rows, list)
    actions = sorted(str(r["action"]) for r in rows)
    assert actions == ["added", "added", "removed", "removed", "snapshot", "snapshot"]
    assert all(r["documentKind"] == "fleet:log" for r in rows)
    by_name = stored_logs(client, admin_token, name="batch_q")
    assert by_name["count"] == 2


def test_status_logs_and_malformed_items_are_kept(client: httpx.Client, admin_token: str) -> None:
    agent = enrolled(client)
    status_line = {
        "hostIdentifier": "web-01",
        "calendarTime": "x",
        "unixTime": "1759752000",  # a string before osquery 5.10
        "severity": "0",
        "filename": "scheduler.cpp",
        "line": "83",
        "message": "Executing scheduled query",
        "version": "5.9.1",
    }
    reply = agent.post("log", {"log_type": "status", "data": [status_line, "not an object"]})
    assert reply.json() == {}
    logs = stored_logs(client, admin_token, type="status")
    assert logs["count"] == 2
    rows = logs["logs"]
    assert isinstance(rows, list)
    assert {r.get("message") for r in rows} >= {"Executing scheduled query"}
    assert any(r.get("malformed") for r in rows)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"log_type": "weird", "data": []}, "log_type"),
        ({"data": []}, "log_type"),
        ({"log_type": "result", "data": {"a": 1}}, "data must be a list"),
    ],
)
def test_bad_log_requests_are_json_400(
    client: httpx.Client, body: dict[str, object], message: str
) -> None:
    reply = enrolled(client).post("log", body)
    assert reply.status_code == 400
    assert message in str(assert_json_object(reply)["error"])


def test_oversized_and_bomb_bodies_get_413_json(client: httpx.Client) -> None:
    agent = enrolled(client)
    limit = 10 * 1024 * 1024
    big = b'{"node_key": "' + agent.node_key.encode() + b'", "data": "' + b"a" * limit + b'"}'
    reply = client.post("/api/v1/osquery/log", content=big)
    assert reply.status_code == 413
    assert "too large" in str(assert_json_object(reply)["error"])
    # 11 MiB of zeros compresses to ~11 KiB: small on the wire, too big once inflated
    bomb = gzip.compress(b'{"log_type": "result", "data": "' + b"0" * (limit + 1024 * 1024))
    reply = client.post(
        "/api/v1/osquery/log",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Authorization": f"NodeKey {agent.node_key}"},
    )
    assert reply.status_code == 413
    assert "decompressed" in str(assert_json_object(reply)["error"])
    # the server is still fine
    assert agent.post("config", {}).status_code == 200


@pytest.mark.parametrize(
    "content, headers, message",
    [
        (b"{not json", {}, "not valid JSON"),
        (b"", {}, "empty body"),
        (b"[1, 2]", {}, "JSON object"),
        (b"\xff\xfe{}", {}, "not valid JSON"),
        (b"definitely not gzip", {"Content-Encoding": "gzip"}, "not valid gzip"),
        (gzip.compress(b'{"a": 1}')[:-6], {"Content-Encoding": "gzip"}, "truncated"),
        (b"{}", {"Content-Encoding": "br"}, "Content-Encoding"),
    ],
)
@pytest.mark.parametrize("path", ["enroll", "config", "log", "distributed/read"])
def test_malformed_bodies_are_json_400(
    client: httpx.Client, path: str, content: bytes, headers: dict[str, str], message: str
) -> None:
    reply = client.post(f"/api/v1/osquery/{path}", content=content, headers=headers)
    assert reply.status_code == 400
    assert message in str(assert_json_object(reply)["error"])


# --- distributed ----------------------------------------------------------------------------


def test_detail_queries_after_enroll_then_nothing(client: httpx.Client, admin_token: str) -> None:
    agent = enrolled(client)
    first = assert_json_object(agent.post("distributed/read", {}))
    queries = first["queries"]
    assert isinstance(queries, dict)
    assert "fleet_detail_query_system_info" in queries
    assert first["accelerate"] == 10 and isinstance(first["accelerate"], int)
    assert isinstance(first["discovery"], dict) and set(first["discovery"]) == set(queries)
    # a read whose answer was lost re-offers the same queries
    assert set(agent.post("distributed/read", {}).json()["queries"]) == set(queries)
    rows = {
        "fleet_detail_query_system_info": [
            {
                "hostname": "renamed",
                "uuid": "uuid-1",
                "cpu_brand": "AMD EPYC",
                "physical_memory": "1024",
                "hardware_serial": "XYZ",
            }
        ],
        "fleet_detail_query_os_version": [
            {
                "name": "Ubuntu",
                "version": "24.04 LTS",
                "platform": "ubuntu",
                "platform_like": "debian",
            }
        ],
        "fleet_detail_query_osquery_info": [{"version": "5.24.0"}],
        "fleet_detail_query_uptime": [{"total_seconds": "3600"}],
        "fleet_detail_query_network_interface": [
            {"interface": "eth0", "address": "10.0.0.5", "mac": "00:11:22:33:44:55"}
        ],
    }
    # the built-in labels' queries come with the details: a new host runs them at once
    labels = [n for n in queries if n.startswith("fleet_label_query_")]
    assert labels
    write = agent.post(
        "distributed/write",
        {
            "queries": {
                **rows,
                "fleet_detail_query_osquery_flags": [],
                **{n: [] for n in labels},
            },
            "statuses": {
                **{n: 0 for n in rows},
                "fleet_detail_query_osquery_flags": 1,
                **{n: 0 for n in labels},
            },
            "messages": {"fleet_detail_query_osquery_flags": "no such table: osquery_flags"},
            "stats": {n: {"wall_time_ms": 1} for n in rows},
        },
    )
    assert write.json() == {}
    started = time.monotonic()
    after = assert_json_object(agent.post("distributed/read", {}))
    assert after["queries"] == {} and "accelerate" not in after
    assert time.monotonic() - started >= 0.75  # held: 1 s in the tests, less up to 20 % jitter
    auth = {"Authorization": f"Bearer {admin_token}"}
    host = client.get("/api/v1/fleet/hosts", headers=auth).json()["hosts"][0]
    assert host["hostname"] == "renamed"
    assert host["cpu_brand"] == "AMD EPYC"
    assert host["osquery_version"] == "5.24.0"
    assert host["os_version"] == "Ubuntu 24.04 LTS"
    assert host["primary_ip"] == "10.0.0.5"
    assert host["hardware_serial"] == "XYZ"
    assert host["detail_updated_at"] is not None


def test_write_for_an_unknown_query_is_ignored(client: httpx.Client) -> None:
    agent = enrolled(client)
    reply = agent.post(
        "distributed/write",
        {
            "queries": {"fleet_distributed_query_999": [{"a": "1"}], "mystery": []},
            "statuses": {"fleet_distributed_query_999": 0, "mystery": "0"},
        },
    )
    assert reply.status_code == 200 and reply.json() == {}


@pytest.mark.parametrize(
    "body, message",
    [
        ({"queries": []}, "queries must be an object"),
        ({"queries": {"q": "rows"}}, "queries.q must be a list"),
        ({"queries": {"q": [1]}}, "queries.q[0]"),
        ({"statuses": {"q": "bad"}}, "statuses.q"),
        ({"statuses": {"q": True}}, "statuses.q"),
        ({"messages": "x"}, "messages must be an object"),
    ],
)
def test_malformed_writes_are_json_400(
    client: httpx.Client, body: dict[str, object], message: str
) -> None:
    reply = enrolled(client).post("distributed/write", body)
    assert reply.status_code == 400
    assert message in str(assert_json_object(reply)["error"])


def test_legacy_unversioned_paths(client: httpx.Client) -> None:
    agent = enrolled(client)
    reply = client.post("/api/osquery/config", json={"node_key": agent.node_key})
    assert "options" in reply.json()


def test_log_batches_are_refused_while_the_store_is_backed_up(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetwatch.osquery import routes

    agent = enrolled(client)
    monkeypatch.setattr(routes, "MAX_WRITE_BACKLOG", -1)
    busy = agent.post("log", {"log_type": "result", "data": [event_row(1)]})
    assert busy.status_code == 429 and "retry later" in str(assert_json_object(busy)["error"])
    monkeypatch.setattr(routes, "MAX_WRITE_BACKLOG", 50_000)
    assert agent.post("log", {"log_type": "result", "data": [event_row(1)]}).json() == {}
