"""The agent lane: a burst of agent requests is let in a few per loop turn, in arrival order,
and a user request's steps are not queued behind the whole burst (step counts, no clocks)."""

from __future__ import annotations

import asyncio

from fleetwatch.osquery.lane import AgentLane


class Turns:
    """Counts event-loop turns (a callback that reschedules itself every turn)."""

    def __init__(self) -> None:
        self.turn = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


async def _burst(lane: AgentLane | None, agents: int) -> tuple[list[int], list[int], int, int]:
    """`agents` agent requests and one user request (6 steps) arriving together.

    Returns the agents' order of entry, the turn each entered in, how many agents had done
    their work when the user request finished, and its last turn."""
    turns = Turns()
    order: list[int] = []
    entered_at: list[int] = []
    done = 0

    async def agent(n: int) -> None:
        nonlocal done
        if lane is not None:
            await lane.enter()
        order.append(n)
        entered_at.append(turns.turn)
        done += 1

    async def user() -> tuple[int, int]:
        for _ in range(6):  # its awaits: auth, SQL, the response
            await asyncio.sleep(0)
        return done, turns.turn

    tasks = [asyncio.create_task(agent(n)) for n in range(agents // 2)]
    user_task = asyncio.create_task(user())
    tasks += [asyncio.create_task(agent(n)) for n in range(agents // 2, agents)]
    await asyncio.gather(*tasks)
    done_before_user, user_turn = await user_task
    turns.stop()
    return order, entered_at, done_before_user, user_turn


def test_a_burst_is_let_in_a_few_per_turn_in_arrival_order() -> None:
    lane = AgentLane(per_turn=16)
    order, entered_at, _, _ = asyncio.run(_burst(lane, 1000))
    assert order == list(range(1000))
    per_turn = [entered_at.count(t) for t in set(entered_at)]
    assert max(per_turn) <= 2 * 16
    assert lane.waiting == 0


def test_a_user_request_does_not_wait_for_the_whole_burst() -> None:
    _, _, without_lane, _ = asyncio.run(_burst(None, 1000))
    # Without the lane, the 500 agents that arrived first all run before the user's first
    # step, and its later steps wait for the rest.
    assert without_lane >= 500
    _, _, with_lane, _ = asyncio.run(_burst(AgentLane(per_turn=16), 1000))
    # With it, each of the user's 6 steps waits for at most a turn's worth of agents.
    assert with_lane <= 7 * 16


def test_cancelled_waiters_are_skipped() -> None:
    async def scenario() -> list[int]:
        lane = AgentLane(per_turn=1)
        entered: list[int] = []

        async def agent(n: int) -> None:
            await lane.enter()
            entered.append(n)

        tasks = [asyncio.create_task(agent(n)) for n in range(5)]
        await asyncio.sleep(0)
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return entered

    assert asyncio.run(scenario()) == [0, 1, 3, 4]
