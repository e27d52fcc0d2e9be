"""Admission control: what would queue past osquery's 16 s is shed at once, with JSON osquery
retries; bounds by count and by age (an injected clock, no timing), and a herd over real
sockets on SQLite and PostgreSQL that is shed fast and ends enrolled on retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest

from fleetwatch.config import Settings
from fleetwatch.osquery.admission import (
    ENROLLS_FULL,
    ENROLLS_SLOW,
    QUEUE_FULL,
    QUEUE_SLOW,
    Admission,
)
from fleetwatch.osquery.lane import AgentLane
from tests.ops.scrape import value
from tests.raw_http import RawConnection, RawReply, enroll_body, post_bytes
from tests.server import RunningServer, running_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_enrolls_in_progress_are_bounded_by_count_and_by_age() -> None:
    clock = Clock()
    admission = Admission(AgentLane(), queue_limit=0, enroll_backlog=3, max_wait=5.0, clock=clock)
    tickets = [admission.enroll_started() for _ in range(3)]
    assert admission.enrolling == 3
    assert admission.refusal(enroll=True) == ENROLLS_FULL
    assert admission.refusal(enroll=False) is None  # check-ins do not wait for enrolls
    admission.enroll_ended(tickets[1])
    assert admission.refusal(enroll=True) is None
    clock.now += 5.0  # the oldest has been in progress the whole allowance
    assert admission.refusal(enroll=True) == ENROLLS_SLOW
    admission.enroll_ended(tickets[0])
    clock.now += 0.0
    assert admission.refusal(enroll=True) == ENROLLS_SLOW  # the next oldest is as old
    admission.enroll_ended(tickets[2])
    assert admission.enrolling == 0 and admission.refusal(enroll=True) is None
    admission.enroll_ended(tickets[2])  # twice is harmless
    assert admission.enrolling == 0


def test_bounds_of_zero_are_off() -> None:
    clock = Clock()
    admission = Admission(AgentLane(), queue_limit=0, enroll_backlog=0, max_wait=0, clock=clock)
    for _ in range(10_000):
        admission.enroll_started()
    clock.now += 3600
    assert admission.refusal(enroll=True) is None


async def test_requests_waiting_in_the_lane_are_bounded_by_count_and_by_age() -> None:
    lane = AgentLane(per_turn=1)
    clock = Clock()
    admission = Admission(lane, queue_limit=3, enroll_backlog=0, max_wait=5.0, clock=clock)
    # one a turn: of four arriving together, the first goes in and three wait
    waiting = [asyncio.create_task(lane.enter()) for _ in range(4)]
    await asyncio.sleep(0)
    assert admission.queued == 3 and lane.oldest_since is not None
    assert admission.refusal(enroll=False) == QUEUE_FULL
    assert admission.refusal(enroll=True) == QUEUE_FULL
    await asyncio.gather(*waiting)
    assert admission.queued == 0 and admission.refusal(enroll=False) is None
    # one waiting, for as long as the allowance: new ones are shed by age
    first, late = asyncio.create_task(lane.enter()), asyncio.create_task(lane.enter())
    await asyncio.sleep(0)
    assert first.done() and admission.queued == 1
    clock.now = lane.oldest_since + 5.0 if lane.oldest_since is not None else 0.0
    assert admission.refusal(enroll=False) == QUEUE_SLOW
    clock.now -= 0.5
    assert admission.refusal(enroll=False) is None
    await late


def test_a_shed_reply_is_json_osquery_retries_without_dropping_its_key() -> None:
    admission = Admission(AgentLane(), queue_limit=1, enroll_backlog=1, max_wait=4.5)
    for enroll in (True, False):
        shed = admission.shed_reply(enroll)
        body = orjson.loads(shed.body)
        assert shed.status == 503 and dict(shed.headers)[b"retry-after"] == b"5"
        # an `error` fails the attempt (osquery retries); no node_invalid, no node_key
        assert set(body) == {"error"} and "retry in 5 s" in body["error"]


# --- a herd over real sockets ---------------------------------------------------------------

BACKLOG = 20
HERD = 300


@pytest.fixture
def admitting(server_settings: Settings) -> Iterator[RunningServer]:
    """A server admitting 20 enrolls at a time (by count only: no age bound, so that what is
    shed does not depend on the machine's speed)."""
    settings = server_settings.model_copy(update={"enroll_backlog": BACKLOG, "agent_queue_wait": 0})
    with running_server(settings) as server:
        yield server


def test_an_enroll_herd_is_shed_fast_and_ends_enrolled_on_retry(
    admitting: RunningServer,
) -> None:
    """300 hosts enroll at once, 20 admitted at a time: the 280 beyond the bound are answered
    while the admitted ones are still being read (their bodies not yet sent), so a shed never
    waits behind queued work; then each host retries as osquery does, until all are in."""

    async def herd() -> tuple[list[RawReply], int, dict[int, str]]:
        connections = [await RawConnection.open(admitting.url) for _ in range(HERD)]
        bodies = [enroll_body(f"herd-{n}") for n in range(HERD)]
        try:
            for connection, body in zip(connections, bodies, strict=True):
                head, _ = post_bytes("/api/v1/osquery/enroll", body)
                await connection.send(head + body[: len(body) // 2])
            replies = {n: asyncio.create_task(c.reply()) for n, c in enumerate(connections)}
            # sheds come back although no admitted enroll can finish yet (the guard is only
            # against a hang: before the fix nothing was shed and nothing came back)
            done: set[asyncio.Task[RawReply]] = set()
            while len(done) < HERD - BACKLOG:
                more, _ = await asyncio.wait(
                    [t for t in replies.values() if not t.done()],
                    timeout=60,
                    return_when="FIRST_COMPLETED",
                )
                assert more, f"only {len(done)} replies while {BACKLOG} enrolls are admitted"
                done |= more
            shed = [t.result() for t in done]
            still_reading = sum(1 for t in replies.values() if not t.done())
            # the rest of every body: the admitted ones complete, the shed ones' is discarded
            for connection, body in zip(connections, bodies, strict=True):
                await connection.send(body[len(body) // 2 :])
            keys: dict[int, str] = {}
            for n, task in replies.items():
                if task in done:
                    continue
                answer = await task
                assert answer.status == 200
                keys[n] = answer.body["node_key"]
            # osquery retries a failed enroll (after 1, 4, 9 ... s): here at once, on the same
            # keep-alive connection, all together, until every host has its key
            for _ in range(HERD):
                missing = [n for n in range(HERD) if n not in keys]
                if not missing:
                    break
                answers = await asyncio.gather(
                    *(
                        connections[n].post("/api/v1/osquery/enroll", orjson.loads(bodies[n]))
                        for n in missing
                    )
                )
                for n, answer in zip(missing, answers, strict=True):
                    if answer.status == 200:
                        keys[n] = answer.body["node_key"]
                    else:
                        assert answer.status == 503 and set(answer.body) == {"error"}
            return shed, still_reading, keys
        finally:
            for connection in connections:
                await connection.close()

    shed, still_reading, keys = asyncio.run(herd())
    assert still_reading == BACKLOG
    assert len(shed) == HERD - BACKLOG
    for reply in shed:
        assert reply.status == 503 and reply.headers["retry-after"] == "1"
        assert set(reply.body) == {"error"}  # parsed by osquery as a failed attempt
        assert reply.body["error"].startswith("the server is busy enrolling other hosts")
    assert len(keys) == HERD and len(set(keys.values())) == HERD
    hosts = admitting.services.hosts
    assert {f"herd-{n}" for n in range(HERD)} <= {h.host_identifier for h in hosts.all()}
    text = admitting.services.ops.metrics.render().decode()
    assert value(text, "fleetwatch_agent_shed_total", endpoint="enroll", reason=ENROLLS_FULL) >= (
        HERD - BACKLOG
    )
    assert value(text, "fleetwatch_enrolls_in_progress") == 0
    assert value(text, "fleetwatch_enroll_backlog_limit") == BACKLOG


def test_enrolls_are_shed_once_more_are_in_progress_than_complete_in_the_allowance() -> None:
    clock = Clock()
    admission = Admission(AgentLane(), queue_limit=0, enroll_backlog=0, max_wait=5.0, clock=clock)
    tickets = [admission.enroll_started() for _ in range(10)]
    assert admission.enroll_rate is None  # nothing completed yet: no rate to go by
    clock.now += 0.25
    for ticket in tickets[:4]:
        admission.enroll_ended(ticket)
    assert admission.enroll_rate is None  # measured over half a second of work
    clock.now += 0.25
    admission.enroll_ended(tickets[4])
    assert admission.enroll_rate == 10.0  # 5 in half a second
    for _ in range(44):
        admission.enroll_started()
    assert admission.enrolling == 49 and admission.refusal(enroll=True) is None
    admission.enroll_started()  # 50: as many as complete in 5 s at 10 a second
    assert admission.refusal(enroll=True) == ENROLLS_SLOW
    assert admission.refusal(enroll=False) is None


async def test_a_queue_longer_than_the_lane_drains_in_the_allowance_is_shed() -> None:
    lane = AgentLane(per_turn=1)
    admission = Admission(lane, queue_limit=0, enroll_backlog=0, max_wait=5.0)
    waiting = [asyncio.create_task(lane.enter()) for _ in range(51)]
    await asyncio.sleep(0)
    assert lane.waiting == 50
    assert admission.refusal(enroll=False) is None  # no rate measured yet, none aged
    lane.drain_rate = 10.0  # as measured: 10 let in a second while others waited
    assert admission.refusal(enroll=False) == QUEUE_SLOW  # 50 wait: 5 s of draining
    await asyncio.gather(*waiting)


async def test_the_drain_rate_is_measured_only_while_requests_wait() -> None:
    lane = AgentLane(per_turn=1)
    for _ in range(100):  # one at a time: nobody waits, nothing to measure
        await lane.enter()
        await asyncio.sleep(0)
    assert lane.drain_rate is None

    async def busy() -> None:
        await lane.enter()
        time.sleep(0.002)  # the work the loop does for it

    while lane.drain_rate is None:
        await asyncio.gather(*(busy() for _ in range(50)))
    assert lane.drain_rate > 0
