"""One simulated agent against a real loopback server: request shapes, distributed queries,
discovery, accelerate, re-enrollment, logs (gzip, retry, batching), scheduled differentials,
and a server that misbehaves (garbage, HTML, empty 500, errors, hangs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from fleetwatch.sim.churn import Churn
from fleetwatch.sim.flags import AgentFlags
from fleetwatch.sim.host import SimHost
from fleetwatch.sim.profile import make_profile
from fleetwatch.sim.transport import Server
from tests.sim.agent_server import CONFIG, ENROLL, LOG, READ, WRITE, AgentServer, Reply

FAST = AgentFlags(
    distributed_interval=0.05,
    logger_tls_period=0.05,
    config_refresh=0,
    retry_unit=0.01,
    request_timeout=0.5,
    tls_enroll_max_interval=0.05,
)
FAST_OPTIONS = {"distributed_interval": 0.05, "logger_tls_period": 0.05}


@pytest.fixture
async def server() -> AsyncIterator[AgentServer]:
    agent_server = AgentServer(config={"options": dict(FAST_OPTIONS)})
    agent_server.url = await agent_server.start()  # type: ignore[attr-defined]
    yield agent_server
    await agent_server.close()


@asynccontextmanager
async def running(
    server: AgentServer,
    platform: str = "ubuntu",
    flags: AgentFlags = FAST,
    churn: Churn | None = None,
    secret: str = "s3cret",
) -> AsyncIterator[SimHost]:
    url: str = server.url  # type: ignore[attr-defined]
    host = SimHost(
        make_profile(42, 1, platform, time.time()),
        Server.from_url(url),
        secret,
        flags=flags,
        churn=churn,
    )
    task = asyncio.create_task(host.run())
    try:
        yield host
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert host.stats.loop_crashes == 0
        host.engines.close()


async def until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_enroll_and_config_requests_are_shaped_like_osquery(server: AgentServer) -> None:
    async with running(server) as host:
        await until(lambda: host.config is not None)
    enroll = server.to(ENROLL)[0]
    assert "authorization" not in enroll.headers
    assert enroll.headers["user-agent"] == "osquery/5.23.1"
    doc = enroll.doc
    assert set(doc) == {"enroll_secret", "host_identifier", "platform_type", "host_details"}
    assert doc["platform_type"] == "9" and doc["host_identifier"] == host.hostname
    details = doc["host_details"]
    assert set(details) == {"os_version", "osquery_info", "system_info", "platform_info"}
    for table in details.values():
        assert table and all(isinstance(v, str) for v in table.values())
    assert details["system_info"]["uuid"] == host.profile.uuid
    config = server.to(CONFIG)[0]
    assert config.doc == {"node_key": host.node_key}
    assert config.headers["authorization"] == f"NodeKey {host.node_key}"
    assert host.flags.distributed_interval == 0.05  # options applied


async def test_distributed_queries_are_answered_in_one_write(server: AgentServer) -> None:
    server.queries = {
        "ok": "SELECT hostname, cpu_logical_cores FROM system_info",
        "bad": "SELECT * FROM foo",
    }
    async with running(server) as host:
        await until(lambda: server.writes())
    write = server.writes()[0]
    assert write["node_key"] == host.node_key
    assert write["queries"] == {
        "ok": [{"hostname": host.hostname, "cpu_logical_cores": str(host.profile.logical_cores)}],
        "bad": [],
    }
    assert write["statuses"] == {"ok": 0, "bad": 1}
    assert write["messages"] == {"ok": "", "bad": "no such table: foo"}
    assert set(write["stats"]["ok"]) == {"wall_time_ms", "user_time", "system_time", "memory"}
    assert [q.name for q in host.received_queries][:2] == ["ok", "bad"]
    assert {r.name for r in host.results_sent} >= {"ok", "bad"}


async def test_discovery_runs_first_and_filters_queries(server: AgentServer) -> None:
    server.queries = {"always": "SELECT 1 AS a", "mine": "SELECT 2 AS b", "other": "SELECT 3"}
    server.discovery = {
        "mine": "SELECT 1 FROM os_version WHERE platform = 'ubuntu'",
        "other": "SELECT 1 FROM os_version WHERE platform = 'windows'",
    }
    async with running(server):
        await until(lambda: server.writes())
    write = server.writes()[0]
    assert write["queries"] == {"always": [{"a": "1"}], "mine": [{"b": "2"}]}
    assert set(write["statuses"]) == set(write["messages"]) == {"always", "mine"}


async def test_a_broken_discovery_query_voids_the_whole_read(server: AgentServer) -> None:
    server.queries = {"a": "SELECT 1", "b": "SELECT 2"}
    server.discovery = {"b": "SELECT 1 FROM no_such_table"}
    async with running(server) as host:
        await until(lambda: len(server.to(READ)) >= 3)
    assert server.writes() == []
    assert "discovery query has an SQL error" in host.stats.last_error


async def test_accelerate_only_as_an_integer(server: AgentServer) -> None:
    server.accelerate = "60"
    async with running(server) as host:
        await until(lambda: len(server.to(READ)) >= 2)
        assert host.accelerate_until == 0.0
        server.accelerate = 60
        await until(lambda: host.accelerate_until > time.time() + 50)
        assert host.distributed_pause(time.time()) == 5.0


async def test_node_invalid_makes_the_host_enroll_again(server: AgentServer) -> None:
    async with running(server) as host:
        await until(lambda: len(server.to(READ)) >= 1)
        first_key = host.node_key
        server.revoke_all()
        await until(lambda: host.stats.enrollments == 2)
        await until(lambda: server.to(READ)[-1].doc.get("node_key") == host.node_key)
    assert host.node_key != first_key and host.stats.node_invalid >= 1
    assert len(server.to(ENROLL)) == 2


@pytest.mark.parametrize(
    "bad",
    [Reply.garbage(), Reply.html(), Reply.error("busy"), Reply(hang=1.0), Reply(close=True)],
    ids=["garbage", "html", "error", "hang", "close"],
)
async def test_a_failing_read_is_retried_three_times_then_the_loop_goes_on(
    server: AgentServer, bad: Reply
) -> None:
    server.queries = {"q": "SELECT 1 AS one"}
    server.script[READ].extend([bad, bad, bad, bad])
    async with running(server) as host:
        await until(lambda: server.writes(), timeout=10)
    reads = server.to(READ)
    assert len(reads) >= 5  # 3 attempts, 1 more failed cycle attempt, then success
    assert host.stats.errors["distributed_read"] == 4
    assert server.writes()[0]["queries"] == {"q": [{"one": "1"}]}


async def test_an_empty_500_counts_as_delivered_like_osquery(server: AgentServer) -> None:
    server.queries = {"q": "SELECT 1 AS one"}
    server.script[WRITE].append(Reply.empty_500())
    async with running(server) as host:
        await until(lambda: host.results_sent)
    assert host.stats.errors["distributed_write"] == 0
    assert len(server.to(WRITE)) >= 1


async def test_failed_writes_keep_results_for_the_next_cycle(server: AgentServer) -> None:
    server.queries = {"q": "SELECT 1 AS one"}
    server.script[WRITE].extend([Reply.error("down")] * 3)
    async with running(server) as host:
        await until(lambda: host.results_sent)
    writes = server.to(WRITE)
    assert len(writes) == 4 and writes[-1].doc["queries"]["q"] == [{"one": "1"}]


async def test_enrollment_retries_until_the_secret_works(server: AgentServer) -> None:
    async with running(server, secret="late") as host:
        await until(lambda: len(server.to(ENROLL)) >= 4)
        assert host.node_key is None
        server.secret = "late"  # the operator adds the secret the host was given
        await until(lambda: host.node_key is not None)
        await until(lambda: host.config is not None)
    assert host.stats.errors["enroll"] >= 4


async def test_logs_are_gzipped_when_the_config_says_so(server: AgentServer) -> None:
    server.config = {
        "options": {**FAST_OPTIONS, "logger_tls_compress": True},
        "schedule": {"os": {"query": "SELECT name, platform FROM os_version", "interval": 1}},
        "decorators": {"load": ["SELECT uuid AS host_uuid FROM system_info"]},
    }
    async with running(server) as host:
        await until(lambda: server.log_lines("result"), timeout=5)
    request = next(r for r in server.to(LOG) if r.doc["log_type"] == "result")
    assert request.headers["content-encoding"] == "gzip"
    assert request.raw[:2] == b"\x1f\x8b"
    line = server.log_lines("result")[0]
    assert line["name"] == "os" and line["action"] == "added" and line["counter"] == 0
    assert line["columns"] == {"name": "Ubuntu", "platform": "ubuntu"}
    assert line["decorations"] == {"host_uuid": host.profile.uuid}
    assert line["hostIdentifier"] == host.hostname
    statuses = server.log_lines("status")
    assert any(s["message"].startswith("osqueryd started") for s in statuses)


async def test_failed_log_posts_keep_the_lines_and_back_off(server: AgentServer) -> None:
    server.script[LOG].extend([Reply.error("full"), Reply.garbage()])
    async with running(server) as host:
        await until(lambda: server.log_lines("status"), timeout=5)
    assert len(server.to(LOG)) == 3
    assert host.stats.errors["log"] == 2
    assert server.log_lines("status")[0]["message"].startswith("osqueryd started")


async def test_at_most_max_lines_per_log_post(server: AgentServer) -> None:
    flags = AgentFlags(**{**_fields(FAST), "logger_tls_max_lines": 1024})
    async with running(server, flags=flags) as host:
        host.logs.add_results(orjson.dumps({"i": i}) for i in range(2500))
        await until(lambda: len(server.log_lines("result")) == 2500)
    sizes = [len(r.doc["data"]) for r in server.to(LOG) if r.doc["log_type"] == "result"]
    assert max(sizes) <= 1024 and sum(sizes) == 2500


async def test_scheduled_queries_log_differential_results(server: AgentServer) -> None:
    server.config = {
        "options": FAST_OPTIONS,
        "schedule": {"procs": {"query": "SELECT pid, name FROM processes", "interval": 1}},
    }
    async with running(server, churn=Churn(process_period=1)):
        await until(
            lambda: any(line["action"] == "removed" for line in server.log_lines("result")),
            timeout=8,
        )
    lines = server.log_lines("result")
    assert {line["counter"] for line in lines if line["action"] == "removed"} != {0}
    assert all(line["epoch"] == 0 and line["name"] == "procs" for line in lines)
    assert {line["counter"] for line in lines if line["action"] == "added"} >= {0}


async def test_config_refresh_picks_up_new_options(server: AgentServer) -> None:
    flags = AgentFlags(**{**_fields(FAST), "config_refresh": 0.1})
    async with running(server, flags=flags) as host:
        await until(lambda: host.config is not None)
        server.config = {"options": {**FAST_OPTIONS, "distributed_interval": 0.07}}
        await until(lambda: host.flags.distributed_interval == 0.07)
        rows = host.query("SELECT value FROM osquery_flags WHERE name = 'distributed_interval'")
        assert rows.rows == [{"value": "0.07"}]


def _fields(flags: AgentFlags) -> dict[str, Any]:
    return {name: getattr(flags, name) for name in flags.__dataclass_fields__}
