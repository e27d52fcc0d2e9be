"""Wake-ups for long-polling hosts: a held distributed/read returns when its host has work.

In process, one asyncio.Event per waiting host. (A cluster adds a Redis channel that calls
`wake` on the node holding the request.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class HostWakeups:
    """Lets a request wait for its host to be woken, and anything to wake hosts."""

    def __init__(self) -> None:
        #: The held requests of each waiting host (almost always one): a future each.
        self._waiting: dict[int, list[asyncio.Future[bool]]] = {}

    @property
    def waiting(self) -> int:
        """How many hosts have a held request right now."""
        return len(self._waiting)

    async def wait(self, host_id: int, timeout: float) -> bool:
        """Wait up to `timeout` s for a wake-up of this host; True if woken."""
        if timeout <= 0:
            return False
        # A future and a timer, not asyncio.wait_for: that makes a task per held request,
        # about 5 % of the server CPU of a fleet-wide campaign at 10,000 hosts (profile).
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiting.setdefault(host_id, []).append(waiter)
        timer = loop.call_later(timeout, _settle, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            held = self._waiting.get(host_id)
            if held is not None:
                if waiter in held:
                    held.remove(waiter)
                if not held:
                    del self._waiting[host_id]

    def wake(self, host_ids: Iterable[int]) -> None:
        """Wake the held requests of these hosts (no-op for hosts not waiting)."""
        for host_id in host_ids:
            for waiter in self._waiting.get(host_id, ()):
                _settle(waiter, True)

    def wake_all(self) -> None:
        """Wake every held request (e.g. a campaign targeting all hosts)."""
        for held in self._waiting.values():
            for waiter in held:
                _settle(waiter, True)


def _settle(waiter: asyncio.Future[bool], woken: bool) -> None:
    if not waiter.done():
        waiter.set_result(woken)
