"""The forwarder: never blocks the caller, drops are counted and logged, a failing
destination harms no other, shutdown drains; end to end, an agent's stored logs reach a
file and a receiver, and a dead receiver neither delays the agent nor loses lines silently."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.forwarding import DestinationError, FileDestination, LogForwarder
from fleetwatch.forwarding.forwarder import serialise
from fleetwatch.ops.metrics import Metrics
from tests.agent import Agent
from tests.conftest import login
from tests.forwarding.receiver import LogReceiver, running_log_receiver
from tests.ops.scrape import scrape, value
from tests.server import running_server


class Gate:
    """A destination that holds every batch until opened (a slow or stuck destination)."""

    name = "gate"

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.batches: list[tuple[str, list[bytes]]] = []

    async def send(self, log_type: str, lines: list[bytes]) -> None:
        await self.open.wait()
        self.batches.append((log_type, lines))

    async def close(self) -> None:
        return None


class Broken:
    name = "broken"

    async def send(self, log_type: str, lines: list[bytes]) -> None:
        raise DestinationError("the disk is on fire")

    async def close(self) -> None:
        return None


def forwarded(metrics: Metrics, destination: str, outcome: str) -> float:
    return value(
        metrics.render().decode(),
        "fleetwatch_log_forward_lines_total",
        destination=destination,
        outcome=outcome,
    )


async def test_full_queue_drops_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    metrics, gate = Metrics(), Gate()
    forwarder = LogForwarder([gate], queue_limit=6, metrics=metrics)
    forwarder.start()
    forwarder.submit(1, "result", [{"n": 0}, {"n": 0}])  # 2 lines each
    await asyncio.sleep(0.05)  # the worker takes it and is stuck in the destination
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "fleetwatch.forwarding"):
        for i in range(1, 4):
            forwarder.submit(1, "result", [{"n": i}, {"n": i}])
    assert time.monotonic() - started < 1  # never waited for the stuck destination
    # The limit counts the batch in flight: 2 more batches fit, the 4th is dropped.
    assert forwarded(metrics, "gate", "dropped") == 2
    assert "dropped 2 lines" in caplog.text
    gate.open.set()
    await forwarder.stop()
    assert forwarded(metrics, "gate", "written") == 6
    assert sorted(json.loads(line)["n"] for _, batch in gate.batches for line in batch) == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


async def test_failing_destination_harms_no_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    file_dest = FileDestination(tmp_path, 1 << 20, 1)
    forwarder = LogForwarder([Broken(), file_dest], queue_limit=100, metrics=metrics)
    forwarder.start()
    with caplog.at_level(logging.WARNING, "fleetwatch.forwarding"):
        forwarder.submit(7, "status", [{"message": "a"}, "not an object"])
        await forwarder.stop()
    assert forwarded(metrics, "broken", "failed") == 2
    assert forwarded(metrics, "file", "written") == 2
    assert "the disk is on fire" in caplog.text and "2 status lines lost" in caplog.text
    written = [json.loads(x) for x in file_dest.path("status").read_text().splitlines()]
    assert written == [{"message": "a", "host_id": 7}, {"host_id": 7, "raw": "not an object"}]


async def test_stop_counts_what_it_could_not_deliver(caplog: pytest.LogCaptureFixture) -> None:
    metrics, gate = Metrics(), Gate()
    forwarder = LogForwarder([gate], queue_limit=100, metrics=metrics)
    forwarder.start()
    forwarder.submit(1, "result", [{"n": 1}])
    await asyncio.sleep(0.05)  # the worker holds it
    forwarder.submit(1, "result", [{"n": 2}, {"n": 3}])
    with caplog.at_level(logging.WARNING, "fleetwatch.forwarding"):
        await forwarder.stop(drain_timeout=0.1)
    assert forwarded(metrics, "gate", "dropped") == 3
    assert "dropped" in caplog.text


def test_serialise_keeps_the_line_and_adds_the_host() -> None:
    line = {"name": "q", "columns": {"a": "1"}, 5: "non-string key"}
    assert json.loads(serialise(3, line)) == {
        "name": "q",
        "columns": {"a": "1"},
        "5": "non-string key",
        "host_id": 3,
    }


# --- end to end ----------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[LogReceiver]:
    with running_log_receiver() as running:
        yield running


LINE = {
    "name": "pack/ops/procs",
    "hostIdentifier": "fwd-01",
    "unixTime": 1795000000,
    "epoch": 0,
    "counter": 1,
    "columns": {"pid": "1", "name": "init"},
    "action": "added",
}


def test_agent_logs_reach_file_and_receiver(
    server_settings: Settings, tmp_path: Path, receiver: LogReceiver
) -> None:
    settings = server_settings.model_copy(
        update={
            "log_forward_dir": tmp_path / "forwarded",
            "log_forward_url": receiver.endpoint("fleet"),
        }
    )
    with running_server(settings) as server, httpx.Client(base_url=server.url) as client:
        agent = Agent(client, "test-enroll-secret", "fwd-01", "uuid-fwd-1")
        agent.enroll()
        second = dict(LINE, counter=2)
        assert agent.post("log", {"log_type": "result", "data": [LINE, second]}).json() == {}
        assert (
            agent.post(
                "log",
                {"log_type": "status", "data": [{"severity": "0", "message": "hi"}]},
                gzip_body=True,
            ).json()
            == {}
        )
        got = receiver.wait_lines("fleet", 3)
        host = server.services.hosts.by_node_key(agent.node_key)
        assert host is not None
        assert sorted((x.get("counter", 0), x["host_id"]) for x in got) == [
            (0, host.id),
            (1, host.id),
            (2, host.id),
        ]
        types = sorted(b["log_type"] for b in receiver.received("fleet"))
        assert types == ["result", "status"]
        result_file = tmp_path / "forwarded" / "osquery_result.log"
        deadline = time.monotonic() + 10
        while not result_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while len(result_file.read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        rows = [json.loads(x) for x in result_file.read_text().splitlines()]
        assert [r["columns"] for r in rows] == [LINE["columns"], LINE["columns"]]
        assert all(r["host_id"] == host.id and r["name"] == LINE["name"] for r in rows)


def test_hanging_receiver_does_not_delay_agents(
    server_settings: Settings, receiver: LogReceiver
) -> None:
    settings = server_settings.model_copy(
        update={
            "log_forward_url": receiver.endpoint("stuck", "hang"),
            "log_forward_timeout": 3.0,
            "log_forward_queue_limit": 3,
        }
    )
    with running_server(settings) as server, httpx.Client(base_url=server.url) as client:
        agent = Agent(client, "test-enroll-secret", "fwd-02", "uuid-fwd-2")
        agent.enroll()
        for i in range(5):
            reply = agent.post("log", {"log_type": "result", "data": [dict(LINE, counter=i)] * 2})
            assert reply.json() == {}
        token = login(server)
        text = scrape(server, token)

        def lines(outcome: str) -> float:
            return value(
                text, "fleetwatch_log_forward_lines_total", destination="http", outcome=outcome
            )

        # Every agent was answered while the first batch still hangs in the destination
        # (3 tries of 3 s): nothing failed yet, that batch is in flight, the rest was dropped.
        assert lines("failed") == 0 and lines("written") == 0
        assert value(text, "fleetwatch_log_forward_queued", destination="http") == 2
        assert lines("dropped") == 8
        deadline = time.monotonic() + 60
        while lines("failed") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            text = scrape(server, token)
        # Every acknowledged line is accounted for: none written, each failed or dropped.
        assert lines("failed") == 2 and lines("dropped") == 8
        assert value(text, "fleetwatch_osquery_log_lines_total", log_type="result") == 10
        assert value(text, "fleetwatch_log_forward_queued", destination="http") == 0
