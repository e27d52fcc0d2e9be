"""A destination's lane: put never waits, a full queue drops and counts, delivery is in order
and at least once through failures of a real receiver (refusing, hanging, recovering), a
refusal for good is counted as failed, and events past the retention are dropped, counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest

from fleetwatch.destinations import DestinationError, Event, HttpSink, Lane, Refused, dumps
from fleetwatch.outbound import OutboundGuard, parse_networks
from tests.receiver import NDJSON, Receiver, running_receiver

LOOPBACK = OutboundGuard(parse_networks("127.0.0.0/8"))


def events(n: int, start: int = 0) -> list[Event]:
    return [Event("campaign", f"e{i}", dumps({"n": i}), 0.0) for i in range(start, start + n)]


class Gate:
    """A sink that holds every batch until opened (a slow or stuck destination)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = asyncio.Event()
        self.batches: list[list[int]] = []

    async def send(self, batch: Sequence[Event]) -> Refused | None:
        self.entered.set()
        await self.open.wait()
        self.batches.append([int(e.id[1:]) for e in batch])
        return None

    async def close(self) -> None:
        return None


class Down:
    """A sink that always fails, retryably."""

    def __init__(self) -> None:
        self.tries = 0

    async def send(self, batch: Sequence[Event]) -> Refused | None:
        self.tries += 1
        raise DestinationError("connection refused")

    async def close(self) -> None:
        return None


async def until(condition: Callable[[], bool], limit: int = 1500) -> None:
    """Poll (each step 10 ms) until `condition()` holds; fail after `limit` steps."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(NDJSON) as running:
        yield running


async def test_full_queue_drops_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[tuple[str, str, int]] = []
    gate = Gate()
    lane = Lane(
        "gate",
        gate,
        batch_size=2,
        interval=0.01,
        queue_limit=5,
        on_outcome=lambda *o: outcomes.append(o),
    )
    lane.start()
    lane.put(events(2))
    await gate.entered.wait()
    with caplog.at_level(logging.WARNING, "fleetwatch.destinations"):
        lane.put(events(4, 2))  # 2 in flight still count: 3 fit, 1 is dropped
    assert lane.view()["queued"] == 5 and lane.state.dropped == 1
    assert "dropped 1 events" in caplog.text and "queue is full" in caplog.text
    gate.open.set()
    await until(lambda: lane.state.sent == 5)
    await lane.stop(deadline=0)
    assert [n for batch in gate.batches for n in batch] == [0, 1, 2, 3, 4]
    assert ("gate", "dropped", 1) in outcomes and ("gate", "sent", 2) in outcomes


async def test_in_order_at_least_once_through_refusals_and_hangs(receiver: Receiver) -> None:
    """The receiver refuses 3 tries, then hangs past the timeout, then recovers: every event
    arrives, in order, and nothing is counted as lost."""
    url = receiver.endpoint("siem", "flaky:3")
    sink = HttpSink(url, LOOPBACK.client(0.5, httpx.Limits(max_connections=1)))
    lane = Lane("siem", sink, batch_size=4, interval=0.01, retry_base=0.01, retry_max=0.05)
    lane.start()
    lane.put(events(6))
    await until(lambda: receiver.attempts.get("siem", 0) >= 3)
    receiver.behaviour["siem"] = "hang"
    lane.put(events(4, 6))
    await until(lambda: receiver.attempts.get("siem", 0) >= 5)
    assert lane.view()["retrying"] and "did not answer in time" in str(lane.state.last_error)
    receiver.behaviour["siem"] = "ok"
    await until(lambda: lane.state.sent == 10)
    await lane.stop(deadline=0)
    got = [r["n"] for r in receiver.records("siem")]
    # at least once and in order: a batch may repeat (a try that timed out after arriving)
    assert sorted(set(got)) == list(range(10))
    assert got == sorted(got)
    assert (lane.state.failed, lane.state.dropped) == (0, 0)


async def test_refused_batch_is_failed_and_the_next_one_goes(receiver: Receiver) -> None:
    sink = HttpSink(receiver.url + "/nowhere", LOOPBACK.client(5, httpx.Limits()))
    lane = Lane("bad", sink, batch_size=10, interval=0.01)
    lane.start()
    lane.put(events(3))
    await until(lambda: lane.state.failed == 3)
    assert "HTTP 404" in str(lane.state.last_error) and lane.view()["queued"] == 0
    sink.url = receiver.endpoint("fixed")  # where the next batch is taken
    lane.put(events(2, 3))
    await until(lambda: lane.state.sent == 2)
    await lane.stop(deadline=0)
    assert [r["n"] for r in receiver.records("fixed")] == [3, 4]


async def test_events_past_retention_are_dropped_and_counted() -> None:
    down = Down()
    lane = Lane(
        "down", down, batch_size=10, interval=0.01, retention=0.2, retry_base=0.01, retry_max=0.02
    )
    lane.start()
    lane.put(events(4))
    await until(lambda: lane.state.dropped == 4)
    view = lane.view()
    assert view["queued"] == 0 and view["sent"] == 0 and view["failed"] == 0
    assert view["last_error"] == "connection refused" and down.tries >= 2
    await lane.stop(deadline=0)


async def test_stop_drains_then_counts_what_it_could_not_deliver() -> None:
    gate = Gate()
    lane = Lane("gate", gate, batch_size=1, interval=0.01)
    lane.start()
    lane.put(events(3))
    await lane.stop(deadline=0)  # the gate never opens
    assert lane.state.dropped == 3 and lane.worker is None


async def test_a_lane_failing_for_good_keeps_retrying_past_a_thousand_failures() -> None:
    """base * 2**failures overflowed a float after ~1,024 failures (OverflowError), which
    stopped the lane's worker for good; the delay is capped instead."""
    down = Down()
    lane = Lane("down", down, batch_size=10, interval=0.01, retry_base=0.001, retry_max=0.001)
    lane.failures = 5_000  # as after a long outage
    lane.start()
    lane.put(events(1))
    await until(lambda: down.tries >= 3)
    assert lane.worker is not None and not lane.worker.done()
    await lane.stop(deadline=0)


class Buggy:
    """A sink that fails on the first batch with an error that is not a DestinationError."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def send(self, batch: Sequence[Event]) -> Refused | None:
        if not self.batches:
            self.batches.append([])
            raise KeyError("campaign")
        self.batches.append([int(e.id[1:]) for e in batch])
        return None

    async def close(self) -> None:
        return None


async def test_a_sink_bug_fails_its_batch_once_and_delivery_goes_on() -> None:
    sink = Buggy()
    lane = Lane("buggy", sink, batch_size=2, interval=0.01)
    lane.start()
    lane.put(events(2))
    await until(lambda: lane.state.failed == 2)
    lane.put(events(1, start=2))
    await until(lambda: lane.state.sent == 1)
    await lane.stop(0)
    assert sink.batches == [[], [2]]  # the failing batch was not tried again
    assert lane.state.last_error == "KeyError: 'campaign'" and lane.failures == 0
