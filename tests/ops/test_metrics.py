"""Metrics: agent traffic, ingest and the change log show up in /metrics on both backends;
/metrics is refused without the right token; the metrics port serves it openly; matching,
resync and webhook outcomes are counted; two apps in one process keep separate registries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.index import Action, Write
from fleetwatch.ops.metrics import Metrics, agent_outcome, query_kind
from tests.agent import Agent, wait_for_long_hold
from tests.conftest import login
from tests.ops.scrape import samples, scrape, value
from tests.query.task_client import TaskClient, kind_query, task_body
from tests.server import RunningServer, running_server

RESULT_LINE = {
    "name": "pack/ops/users",
    "hostIdentifier": "web-01",
    "calendarTime": "Mon Nov 23 10:00:00 2026 UTC",
    "unixTime": 1795000000,
    "epoch": 0,
    "counter": 1,
    "numerics": False,
    "columns": {"username": "root", "uid": "0"},
    "action": "added",
}


def test_agent_traffic_and_state_in_metrics(live_server: RunningServer, admin_token: str) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        agent = Agent(client, "test-enroll-secret", "web-01", "uuid-metrics-1")
        assert "node_key" in agent.enroll()
        assert agent.post("config", {}).status_code == 200
        second = dict(RESULT_LINE, counter=2, columns={"username": "ops", "uid": "1000"})
        for _ in range(2):  # the resend stores nothing new
            batch = {"log_type": "result", "data": [RESULT_LINE, second]}
            assert agent.post("log", batch).json() == {}
        read = agent.post("distributed/read", {}).json()
        names = list(read["queries"])
        assert names, read
        written = agent.post(
            "distributed/write",
            {"queries": {n: [] for n in names}, "statuses": {n: 0 for n in names}},
        )
        assert written.status_code == 200, written.text
        assert client.post("/api/v1/osquery/config", json={"node_key": "nope"}).status_code == 401
        assert client.post("/api/v1/osquery/log", content=b"not json").status_code == 400

    text = scrape(live_server, admin_token)
    assert value(text, "fleetwatch_agent_requests_total", endpoint="enroll", outcome="ok") == 1
    assert value(text, "fleetwatch_agent_requests_total", endpoint="log", outcome="ok") == 2
    assert (
        value(text, "fleetwatch_agent_requests_total", endpoint="config", outcome="node_invalid")
        == 1
    )
    assert value(text, "fleetwatch_agent_requests_total", endpoint="log", outcome="refused") == 1
    assert value(text, "fleetwatch_osquery_log_lines_total", log_type="result") == 4
    assert value(text, "fleetwatch_osquery_log_rows_stored_total", log_type="result") == 2
    for kind in ("detail", "label"):
        sent = [n for n in names if query_kind(n) == kind]
        assert value(text, "fleetwatch_distributed_results_total", kind=kind, outcome="ok") == len(
            sent
        )
    assert value(text, "fleetwatch_hosts", status="online") == 1
    assert value(text, "fleetwatch_held_long_polls") == 0
    assert value(text, "fleetwatch_changelog_sequence") >= 3  # host, 2 log rows
    assert value(text, "fleetwatch_changelog_lag") >= 0
    assert (
        value(
            text,
            "fleetwatch_http_request_duration_seconds_count",
            route="/api/v1/osquery/enroll",
            method="POST",
        )
        == 1
    )
    # An unmatched path is one label, not one per path.
    httpx.get(f"{live_server.url}/no/such/path/1")
    httpx.get(f"{live_server.url}/no/such/path/2")
    text = scrape(live_server, admin_token)
    assert (
        value(
            text,
            "fleetwatch_http_request_duration_seconds_count",
            route="unmatched",
            method="GET",
        )
        == 2
    )


def test_held_long_poll_is_a_gauge(live_server: RunningServer, admin_token: str) -> None:
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        agent = Agent(client, "test-enroll-secret", "db-01", "uuid-metrics-2")
        agent.enroll()
        names = list(agent.post("distributed/read", {}).json()["queries"])
        agent.post("distributed/write", {"queries": {n: [] for n in names}})
        # Details answered: the next read is held (distributed_hold is 1 s in the tests).
        import threading

        auth = {"Authorization": f"Bearer {admin_token}"}
        host_id = client.get("/api/v1/fleet/hosts", headers=auth).json()["hosts"][0]["id"]
        wait_for_long_hold(host_id, hold=1.0, interval=1)
        held = threading.Thread(target=lambda: agent.post("distributed/read", {}))
        held.start()
        deadline = time.monotonic() + 5
        seen = 0.0
        while time.monotonic() < deadline and not seen:
            seen = value(scrape(live_server, admin_token), "fleetwatch_held_long_polls")
        held.join()
    assert seen == 1


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A SQLite server with a metrics token, a metrics port and quick webhook give-up."""
    settings = Settings(
        port=0,
        data_dir=tmp_path / "data",
        enroll_secret="test-enroll-secret",
        admin_email="admin@example.com",
        admin_password="admin-password-1",
        distributed_hold=1.0,
        metrics_token="metrics-token-for-prometheus",
        metrics_port=0,
        webhook_failure_limit=2,
        webhook_retry_base=0.05,
        outbound_allow="127.0.0.0/8",  # the dead callback is on loopback
        subscriber_queue_limit=5,
    )
    with running_server(settings) as server:
        yield server


def test_metrics_access(ops_server: RunningServer) -> None:
    url = f"{ops_server.url}/metrics"
    missing = httpx.get(url)
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and "error" in wrong.json()
    token = login(ops_server)
    httpx.post(
        f"{ops_server.url}/api/v1/fleet/users",
        headers={"Authorization": f"Bearer {token}"},
        json={"email": "obs@example.com", "password": "observer-pw-1", "global_role": "observer"},
    ).raise_for_status()
    observer = login(ops_server, "obs@example.com", "observer-pw-1")
    refused = httpx.get(url, headers={"Authorization": f"Bearer {observer}"})
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert "fleetwatch_hosts" in scrape(ops_server, "metrics-token-for-prometheus")
    assert "fleetwatch_hosts" in scrape(ops_server, token)
    # The metrics port: open, GET /metrics only.
    metrics_server = ops_server.services.ops.metrics_server
    assert metrics_server is not None
    base = f"http://127.0.0.1:{metrics_server.port}"
    open_reply = httpx.get(f"{base}/metrics")
    assert open_reply.status_code == 200 and "fleetwatch_changelog_sequence" in open_reply.text
    other = httpx.get(f"{base}/")
    assert other.status_code == 404 and "error" in other.json()


def test_matching_resync_and_webhook_outcomes(ops_server: RunningServer) -> None:
    token = login(ops_server)
    tasks = TaskClient(ops_server, token)
    try:
        link = tasks.create(task_body(kind_query("docs:m"), "CONTINUOUS"))["documentSelfLink"]
        dead = f"http://127.0.0.1:{_closed_port()}/hook"
        reply = tasks.http.post(f"{link}/subscriptions", json={"reference": dead})
        assert reply.status_code == 200, reply.text
        # Twelve changes committed in one batch reach the subscriber's 5-notification queue
        # before its reader can drain any (socket buffers would absorb separate writes), so
        # it overruns and gets a resync.
        with tasks.http.stream("GET", f"{link}/events", timeout=30):
            writes = [Write(Action.POST, f"/docs/m/d{i}", "docs:m", {"n": i}) for i in range(12)]
            ops_server.call(ops_server.services.index.apply(writes))
            deadline = time.monotonic() + 20
            text = ""
            while time.monotonic() < deadline:
                text = scrape(ops_server, token)
                if (
                    value(text, "fleetwatch_subscriber_resyncs_total") >= 1
                    and value(text, "fleetwatch_webhook_deliveries_total", outcome="dropped") == 1
                ):
                    break
                time.sleep(0.1)
    finally:
        tasks.close()
    assert value(text, "fleetwatch_change_matching_seconds_count") >= 12
    assert value(text, "fleetwatch_standing_query_tasks") == 1
    assert value(text, "fleetwatch_subscriber_resyncs_total") >= 1
    assert value(text, "fleetwatch_webhook_deliveries_total", outcome="failed") == 2
    assert value(text, "fleetwatch_webhook_deliveries_total", outcome="dropped") == 1
    assert value(text, "fleetwatch_subscriber_queue_limit") == 5


def _closed_port() -> int:
    from tests.services import free_port

    return free_port()  # nothing listens there once the probe socket is closed


def test_registries_are_per_app() -> None:
    first, second = Metrics(), Metrics()
    first.count_agent_request("enroll", 200)
    first.count_agent_request("enroll", 200)
    second.count_agent_request("enroll", 401)
    one, two = first.render().decode(), second.render().decode()
    assert value(one, "fleetwatch_agent_requests_total", endpoint="enroll", outcome="ok") == 2
    assert value(two, "fleetwatch_agent_requests_total", endpoint="enroll", outcome="ok") == 0
    assert (
        value(two, "fleetwatch_agent_requests_total", endpoint="enroll", outcome="node_invalid")
        == 1
    )
    assert samples(one) != samples(two)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (401, "node_invalid"), (413, "too_large"), (400, "refused"), (500, "error")],
)
def test_agent_outcome(status: int, outcome: str) -> None:
    assert agent_outcome(status) == outcome


def test_query_kind() -> None:
    assert query_kind("fleet_distributed_query_12") == "campaign"
    assert query_kind("fleet_label_query_3") == "label"
    assert query_kind("fleet_detail_query_os_version") == "detail"
    assert query_kind("anything else") == "other"


def test_every_metric_is_documented(tmp_path: Path) -> None:
    from fleetwatch.app import create_app

    app = create_app(Settings(data_dir=tmp_path, log_forward_dir=tmp_path / "fwd"))
    metrics: Metrics = app.state.services.ops.metrics
    names = {family.name for family in metrics.registry.collect()}
    assert "fleetwatch_destination_queued" in names and "fleetwatch_hosts" in names
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name in names:
        # Counters are exposed (and documented) with their _total suffix.
        assert f"`{name}`" in doc or f"`{name}_total`" in doc, f"{name} is not documented"


def test_integer_counters_expose_what_prometheus_client_would() -> None:
    """Request and agent counters are plain integer adds (no lock, no child lookup), read at
    scrape time in the same exposition as prometheus_client's own Counter and Histogram."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from fleetwatch.ops.metrics import LATENCY_BUCKETS, IntCounters, IntHistogram

    observed = (0.0005, 0.001, 0.001, 0.003, 0.5, 5.0, 20.0)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hist = IntHistogram("t_seconds", "doc", ("route", "method"), LATENCY_BUCKETS)
    counts = IntCounters("t_requests", "doc", ("endpoint",))
    ours.register(hist)
    ours.register(counts)
    ref_hist = Histogram(
        "t_seconds", "doc", ["route", "method"], buckets=LATENCY_BUCKETS, registry=theirs
    )
    ref_counts = Counter("t_requests", "doc", ["endpoint"], registry=theirs)
    for seconds in observed:
        hist.observe(("/a", "POST"), seconds)
        ref_hist.labels("/a", "POST").observe(seconds)
    hist.observe(("/b", "GET"), 0.01)
    ref_hist.labels("/b", "GET").observe(0.01)
    for endpoint, n in (("read", 3), ("write", 1)):
        counts.add((endpoint,), n)
        ref_counts.labels(endpoint).inc(n)
    assert generate_latest(ours) == generate_latest(theirs)
    assert hist.values[("/a", "POST")][0] == 3  # 0.001 counts in its own `le` bucket
    assert counts.values == {("read",): 3, ("write",): 1}
