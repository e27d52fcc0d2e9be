"""osquery log forwarding is destinations: end to end, an agent's stored logs reach the
`log_forward_dir` files and the `log_forward_url` receiver (and a named destination's
`osquery_logs`), and a hanging receiver neither delays the agent nor loses lines silently:
they wait in the bounded queue, the overflow is counted as dropped, and they arrive once the
receiver recovers. Followers stop together at shutdown, not one grace period after another."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.destinations import (
    Destinations,
    DestinationSettings,
    Event,
    FeedBatch,
    FileSink,
    Follower,
    Lane,
    Refused,
    log_event,
)
from tests.agent import Agent
from tests.conftest import login
from tests.ops.scrape import scrape, value
from tests.receiver import HEC, LOGS, Receiver, running_receiver
from tests.server import running_server


def test_log_event_keeps_the_line_adds_the_host_and_a_stable_id() -> None:
    line = {"name": "q", "columns": {"a": "1"}, 5: "non-string key", "unixTime": "1795000000"}
    event = log_event(3, "result", line)
    assert json.loads(event.line) == {
        "name": "q",
        "columns": {"a": "1"},
        "5": "non-string key",
        "unixTime": "1795000000",
        "host_id": 3,
    }
    assert event.time == 1795000000 and event.source == "result"
    assert log_event(3, "result", line).id == event.id != log_event(4, "result", line).id
    assert json.loads(log_event(7, "status", "not an object").line) == {
        "host_id": 7,
        "raw": "not an object",
    }


def test_logs_go_to_the_destinations_forwarding_that_type(
    tmp_path: Path,
) -> None:
    def lane(name: str, *types: str) -> Lane:
        sink = FileSink(lambda _source: tmp_path / name, 1 << 20, 1)
        return Lane(name, sink, log_types=frozenset(types))

    forwarder = lane("log_forward_dir", "result")
    forwarder.campaign_rows = False  # log forwarding's own lane: osquery logs only
    hub = Destinations(
        [lane("results", "result"), lane("siem"), lane("all", "result", "status"), forwarder]
    )
    assert hub.names() == ["all", "results", "siem"] and hub.forwards_logs()
    assert [v["name"] for v in hub.views()] == ["all", "log_forward_dir", "results", "siem"]
    hub.submit_logs(1, "result", [{"a": 1}, {"a": 2}])
    hub.submit_logs(1, "status", [{"s": 1}])
    assert hub.queue_depths() == {"results": 2, "siem": 0, "all": 3, "log_forward_dir": 2}


# --- end to end ----------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(LOGS) as running:
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


def test_agent_logs_reach_file_receiver_and_named_destination(
    server_settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    with running_receiver(HEC) as hec:
        settings = server_settings.model_copy(
            update={
                "log_forward_dir": tmp_path / "forwarded",
                "log_forward_url": receiver.endpoint("fleet"),
                "outbound_allow": "127.0.0.0/8",
                "destinations": {
                    "siem": DestinationSettings(
                        type="splunk_hec",
                        url=hec.endpoint("siem"),
                        token="t",
                        interval=0.05,
                        osquery_logs=("status",),
                    )
                },
            }
        )
        _agent_logs_reach_everywhere(settings, tmp_path, receiver, hec)


def _agent_logs_reach_everywhere(
    settings: Settings, tmp_path: Path, receiver: Receiver, hec: Receiver
) -> None:
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
        types = sorted(b["log_type"] for b in receiver.bodies("fleet"))
        assert types == ["result", "status"]
        [status] = hec.wait_records("siem", 1)
        assert status["sourcetype"] == "fleetwatch:status"
        assert status["event"] == {"severity": "0", "message": "hi", "host_id": host.id}
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
    server_settings: Settings, receiver: Receiver
) -> None:
    settings = server_settings.model_copy(
        update={
            "log_forward_url": receiver.endpoint("stuck", "hang"),
            "log_forward_timeout": 1.0,
            "log_forward_queue_limit": 3,
            "outbound_allow": "127.0.0.1/32",
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

        def events(outcome: str) -> float:
            return value(
                text,
                "fleetwatch_destination_events_total",
                destination="log_forward_url",
                outcome=outcome,
            )

        # Every agent was answered while the first batch hangs in the destination: 3 lines
        # wait (the first batch in flight counts), the other 7 were dropped, counted.
        assert events("sent") == 0 and events("failed") == 0 and events("dropped") == 7
        assert value(text, "fleetwatch_destination_queued", destination="log_forward_url") == 3
        admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        [state] = admin.get("/api/v1/fleet/destinations").json()["destinations"]
        assert state["name"] == "log_forward_url" and state["queued"] == 3
        receiver.behaviour["stuck"] = "ok"  # it recovers: what waited arrives
        lines = receiver.wait_lines("stuck", 3)
        assert [line["counter"] for line in lines] == [0, 0, 1]
        deadline = time.monotonic() + 30
        while events("sent") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            text = scrape(server, token)
        assert events("sent") == 3 and events("dropped") == 7 and events("failed") == 0
        assert value(text, "fleetwatch_osquery_log_lines_total", log_type="result") == 10
        assert value(text, "fleetwatch_destination_queued", destination="log_forward_url") == 0
        admin.close()


class StuckSink:
    """A receiver that takes a batch and answers only when released."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, events: Sequence[Event]) -> Refused | None:
        self.entered.set()
        await self.release.wait()
        return None

    async def close(self) -> None:
        return None


class OneEvent:
    """A change log holding one event for every destination."""

    async def read(self, destination: str, after: int, limit: int) -> FeedBatch:
        if after >= 1:
            return FeedBatch([], after, False)
        return FeedBatch([Event("campaign", "1-1-0", b"{}", time.time())], 1, False)

    async def end(self) -> int:
        return 0

    async def first_retained(self) -> int:
        return 0


class Saved:
    def __init__(self) -> None:
        self.saved: dict[str, int] = {}

    async def load(self, name: str) -> int | None:
        return self.saved.get(name)

    async def save(self, name: str, seq: int) -> None:
        self.saved[name] = seq


@dataclass
class Held:
    held: bool = True
    token: int = 1


async def test_followers_stop_together_not_one_grace_after_another() -> None:
    sinks = [StuckSink(), StuckSink()]
    lanes = [Lane(f"d{n}", sink) for n, sink in enumerate(sinks)]
    hub = Destinations(lanes)
    cursors = Saved()
    hub.follow([Follower(lane, OneEvent(), cursors, Held()) for lane in lanes])
    hub.start()
    for sink in sinks:
        await asyncio.wait_for(sink.entered.wait(), 5)  # each is stuck in a send
    loops = [f._loop for f in hub.followers.values()]
    stopping = asyncio.create_task(hub.stop(drain_timeout=0))
    for _ in range(200):  # a bound on the wait, not a timing threshold
        if all(loop is not None and loop._stopping for loop in loops):
            break
        await asyncio.sleep(0.01)
    # both stops began while both receivers still hold their batch (one after another,
    # the second would only begin after the first's grace period)
    assert all(loop is not None and loop._stopping for loop in loops)
    assert not stopping.done()
    for sink in sinks:
        sink.release.set()
    await stopping
    assert cursors.saved == {"destination:d0": 1, "destination:d1": 1}
