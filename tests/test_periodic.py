"""Background loops stop between their steps: a running step finishes, a waiting loop ends."""

from __future__ import annotations

import asyncio

import pytest

from fleetwatch.periodic import Periodic


async def test_stop_lets_the_running_step_finish() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    finished: list[bool] = []

    async def step() -> None:
        entered.set()
        await release.wait()
        await asyncio.sleep(0)  # a second await: a cancel would land here or above
        finished.append(True)

    loop = Periodic("test-loop", step, 0.01)
    loop.start()
    await entered.wait()
    stopping = asyncio.create_task(loop.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the step instead of cancelling it
    release.set()
    await stopping
    assert finished == [True]
    assert not loop.running


async def test_a_stuck_step_is_cancelled_after_the_grace_period() -> None:
    cancelled: list[bool] = []

    async def step() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    loop = Periodic("test-stuck", step, 0.01)
    loop.start()
    await asyncio.sleep(0.05)
    await loop.stop(grace=0.05)
    assert cancelled == [True]


async def test_a_failing_step_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    third = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            third.set()
        raise RuntimeError("database away")

    loop = Periodic("test-failing", step, 0.01, failure="saving failed")
    loop.start()
    await asyncio.wait_for(third.wait(), 5)
    await loop.stop()
    assert calls >= 3
    assert "test-failing: saving failed" in caplog.text
    assert "database away" in caplog.text


async def test_poke_and_run_first_do_not_wait_for_the_interval() -> None:
    ran = asyncio.Event()

    async def step() -> None:
        ran.set()

    first = Periodic("test-first", step, 3600, run_first=True)
    first.start()
    await asyncio.wait_for(ran.wait(), 5)
    await first.stop()

    ran.clear()
    poked = Periodic("test-poke", step, 3600)
    poked.start()
    await asyncio.sleep(0.02)
    assert not ran.is_set()  # an hour's interval: nothing yet
    poked.poke()
    await asyncio.wait_for(ran.wait(), 5)
    await poked.stop()


async def test_stop_before_start_and_twice_is_harmless() -> None:
    async def step() -> None:
        return None

    loop = Periodic("test-idle", step, 0.01)
    await loop.stop()
    loop.start()
    await loop.stop()
    await loop.stop()
    loop.start()  # can start again after a stop
    assert loop.running
    await loop.stop()


async def test_a_failing_interval_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: asyncio.Queue[None] = asyncio.Queue()

    async def step() -> None:
        ran.put_nowait(None)

    def interval() -> float:
        raise OverflowError("(34, 'Numerical result out of range')")

    loop = Periodic("test-interval", step, interval, run_first=True)
    loop.start()
    await asyncio.wait_for(ran.get(), 5)
    loop.poke()  # the loop is alive: a poke runs the next step
    await asyncio.wait_for(ran.get(), 5)
    await loop.stop()  # and stopping it raises nothing
    assert "test-interval: could not compute its interval" in caplog.text
    assert "Numerical result out of range" in caplog.text
