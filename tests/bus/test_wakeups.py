"""Host wake-ups: a held request returns when its host is woken, not before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fleetwatch.bus.wakeups import HostWakeups


async def test_wait_times_out_without_a_wakeup() -> None:
    wakeups = HostWakeups()
    assert await wakeups.wait(1, 0.05) is False
    assert wakeups.waiting == 0


async def test_wake_releases_only_the_named_host() -> None:
    wakeups = HostWakeups()
    one = asyncio.create_task(wakeups.wait(1, 5))
    two = asyncio.create_task(wakeups.wait(2, 0.2))
    await asyncio.sleep(0)
    assert wakeups.waiting == 2
    wakeups.wake([1, 99])
    assert await one is True
    assert await two is False
    assert wakeups.waiting == 0


async def test_wake_all() -> None:
    wakeups = HostWakeups()
    waits = [asyncio.create_task(wakeups.wait(i, 5)) for i in range(5)]
    await asyncio.sleep(0)
    wakeups.wake_all()
    assert await asyncio.gather(*waits) == [True] * 5


async def test_zero_timeout_does_not_wait() -> None:
    assert await HostWakeups().wait(1, 0) is False


async def test_two_held_requests_of_one_host_are_both_woken() -> None:
    wakeups = HostWakeups()
    first = asyncio.create_task(wakeups.wait(1, 5))
    second = asyncio.create_task(wakeups.wait(1, 5))
    await asyncio.sleep(0)
    assert wakeups.waiting == 1
    wakeups.wake([1])
    assert list(await asyncio.gather(first, second)) == [True, True]
    assert wakeups.waiting == 0


async def test_a_cancelled_request_stops_waiting_alone() -> None:
    wakeups = HostWakeups()
    gone = asyncio.create_task(wakeups.wait(1, 5))
    held = asyncio.create_task(wakeups.wait(1, 5))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert gone.cancelled() and wakeups.waiting == 1
    wakeups.wake([1])
    assert await held is True
    assert wakeups.waiting == 0


async def test_many_woken_hosts_are_answered_a_slice_per_loop_iteration() -> None:
    """Waking 10,000 held reads must not run them all before anything else: a callback
    scheduled after the wake (a user request's next step) runs between two slices."""
    wakeups = HostWakeups()
    waits = [asyncio.create_task(wakeups.wait(i, 30)) for i in range(1000)]
    await asyncio.sleep(0)
    assert wakeups.waiting == 1000
    held = [future for futures in wakeups._waiting.values() for future in futures]
    seen_by_other_work: list[int] = []
    wakeups.wake(range(1000))
    woken_at_once = sum(f.done() for f in held)
    asyncio.get_running_loop().call_soon(
        lambda: seen_by_other_work.append(sum(f.done() for f in held))
    )
    assert await asyncio.gather(*waits) == [True] * 1000
    assert 0 < woken_at_once < 1000
    assert seen_by_other_work and seen_by_other_work[0] < 1000
    assert wakeups.waiting == 0


async def test_a_request_whose_client_went_away_stops_waiting_alone() -> None:
    wakeups = HostWakeups()
    gone: list[Callable[[], None]] = []
    left = asyncio.create_task(wakeups.wait(7, 60, gone.append))
    stays = asyncio.create_task(wakeups.wait(7, 60))
    await asyncio.sleep(0)
    assert len(gone) == 1 and len(wakeups.deadlines()) == 2
    gone[0]()  # its client went away: let go now, not in a minute
    assert await left is False
    assert wakeups.waiting == 1 and len(wakeups.deadlines()) == 1
    gone[0]()  # a second call (or one after the wait ended) does nothing
    wakeups.wake([7])
    assert await stays is True
    assert wakeups.waiting == 0 and wakeups.deadlines() == []


async def test_deadlines_are_when_holds_end_in_loop_time() -> None:
    wakeups = HostWakeups()
    loop = asyncio.get_running_loop()
    before = loop.time()
    waits = [asyncio.create_task(wakeups.wait(i, 10.0 * i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    after = loop.time()
    ends = sorted(wakeups.deadlines())
    for i, end in zip((1, 2, 3), ends, strict=True):
        assert before + 10.0 * i <= end <= after + 10.0 * i
    wakeups.wake_all()
    await asyncio.gather(*waits)
    assert wakeups.deadlines() == []
