"""Wake-ups for long-polling hosts: a held distributed/read returns when its host has work.

In process, one asyncio.Event per waiting host. (A cluster adds a Redis channel that calls
`wake` on the node holding the request.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial


class HostWakeups:
    """Lets a request wait for its host to be woken, and anything to wake hosts."""

    def __init__(self) -> None:
        #: The held requests of each waiting host (almost always one): a future each.
        self._waiting: dict[int, list[asyncio.Future[bool]]] = {}
        #: Each held request's timer (for `deadlines`).
        self._timers: dict[asyncio.Future[bool], asyncio.TimerHandle] = {}

    @property
    def waiting(self) -> int:
        """How many hosts have a held request right now."""
        return len(self._waiting)

    def deadlines(self) -> list[float]:
        """When each held request's hold ends, in event-loop time (loop.time())."""
        return [timer.when() for timer in self._timers.values()]

    async def wait(
        self,
        host_id: int,
        timeout: float,
        when_gone: Callable[[Callable[[], None]], None] | None = None,
    ) -> bool:
        """Wait up to `timeout` s for a wake-up of this host; True if woken. `when_gone`, if
        given, is handed a callback that ends the wait early (the requester went away)."""
        if timeout <= 0:
            return False
        # A future and a timer, not asyncio.wait_for: that makes a task per held request,
        # about 5 % of the server CPU of a fleet-wide campaign at 10,000 hosts (profile).
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiting.setdefault(host_id, []).append(waiter)
        timer = loop.call_later(timeout, _settle, waiter, False)
        self._timers[waiter] = timer
        if when_gone is not None:
            when_gone(partial(_settle, waiter, False))
        try:
            return await waiter
        finally:
            timer.cancel()
            del self._timers[waiter]
            held = self._waiting.get(host_id)
            if held is not None:
                if waiter in held:
                    held.remove(waiter)
                if not held:
                    del self._waiting[host_id]

    def wake(self, host_ids: Iterable[int]) -> None:
        """Wake the held requests of these hosts (no-op for hosts not waiting)."""
        waiting = self._waiting
        _settle_slices([w for h in host_ids for w in waiting.get(h, ())], 0)

    def wake_all(self) -> None:
        """Wake every held request (e.g. a campaign targeting all hosts)."""
        _settle_slices([w for held in self._waiting.values() for w in held], 0)


#: Held requests answered per event loop iteration when many hosts are woken at once.
WAKE_SLICE = 32


def _settle_slices(waiters: list[asyncio.Future[bool]], start: int) -> None:
    """Wake a slice now and schedule the next: woken reads are answered a slice per loop
    iteration, and a user request arriving meanwhile is served between two slices instead
    of after all of them (10,000 woken reads take seconds of CPU)."""
    end = start + WAKE_SLICE
    for waiter in waiters[start:end]:
        _settle(waiter, True)
    if end < len(waiters):
        waiters[end].get_loop().call_soon(_settle_slices, waiters, end)


def _settle(waiter: asyncio.Future[bool], woken: bool) -> None:
    if not waiter.done():
        waiter.set_result(woken)
