"""A lane for agent requests, so user requests never queue behind a burst of them.

The event loop runs ready callbacks in arrival order, and a user request waits its turn at
every `await` (its database calls, its own response). When a fleet-wide campaign makes
10,000 hosts write at once, each turn of a user request would wait for every agent request
that arrived meanwhile. The lane lets at most `per_turn` agent requests start their work in
one turn of the loop; the rest wait in arrival order and are let in `per_turn` a turn. The
loop stays busy with agent work (the same throughput) but a user request waits for at most
about `per_turn` agent requests at each of its steps instead of all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

#: Agent requests let in per turn of the event loop.
AGENTS_PER_TURN = 16
#: Seconds of busy turns (requests waiting) over which the drain rate is measured.
RATE_WINDOW = 0.25


class AgentLane:
    """Admits agent requests `per_turn` per event-loop turn (see the module docstring)."""

    def __init__(self, per_turn: int = AGENTS_PER_TURN) -> None:
        self.per_turn = per_turn
        #: Requests let in since the last turn began.
        self._admitted = 0
        self._turn_scheduled = False
        #: Waiting requests and when each began to wait (monotonic), in arrival order.
        self._waiting: deque[tuple[asyncio.Future[None], float]] = deque()
        #: Requests let in per second while others waited (what the loop can take), or None
        #: before the lane was first busy; measured over `RATE_WINDOW` s of busy turns.
        self.drain_rate: float | None = None
        self._busy_at: float | None = None
        self._busy_seconds = 0.0
        self._busy_let_in = 0

    @property
    def waiting(self) -> int:
        """Agent requests waiting to be let in."""
        return len(self._waiting)

    @property
    def oldest_since(self) -> float | None:
        """When the request waiting longest began to wait (time.monotonic), or None."""
        return self._waiting[0][1] if self._waiting else None

    async def enter(self) -> None:
        """Return when this request may do its work (at once unless the turn is full)."""
        if self._admitted < self.per_turn and not self._waiting:
            self._admitted += 1
            self._schedule_turn()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((waiter, time.monotonic()))
        self._schedule_turn()
        await waiter

    def _schedule_turn(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        # Runs once per loop turn while requests come or wait: a new allowance.
        self._turn_scheduled = False
        self._admitted = 0
        waiting = self._waiting
        if waiting:
            self._measure(time.monotonic())
        else:
            self._busy_at = None
        while waiting and self._admitted < self.per_turn:
            waiter, _ = waiting.popleft()
            if not waiter.done():  # a cancelled request no longer waits
                waiter.set_result(None)
                self._admitted += 1
        if self._busy_at is not None:
            self._busy_let_in += self._admitted
        if self._admitted:
            self._schedule_turn()

    def _measure(self, now: float) -> None:
        # Between two turns that found requests waiting, the loop did the work of those let
        # in at the first: their count over the time is how fast the loop drains the lane.
        if self._busy_at is not None:
            self._busy_seconds += now - self._busy_at
            if self._busy_seconds >= RATE_WINDOW:
                rate = self._busy_let_in / self._busy_seconds
                old = self.drain_rate
                self.drain_rate = rate if old is None else (old + rate) / 2
                self._busy_seconds, self._busy_let_in = 0.0, 0
        self._busy_at = now
