"""Host wake-ups: a held request returns when its host is woken, not before."""

from __future__ import annotations

import asyncio

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
