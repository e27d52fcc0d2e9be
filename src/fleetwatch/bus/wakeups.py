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
        self._waiting: dict[int, asyncio.Event] = {}
        self._all = asyncio.Event()

    @property
    def waiting(self) -> int:
        """How many hosts have a held request right now."""
        return len(self._waiting)

    async def wait(self, host_id: int, timeout: float) -> bool:
        """Wait up to `timeout` s for a wake-up of this host; True if woken."""
        if timeout <= 0:
            return False
        event = self._waiting.get(host_id)
        if event is None:
            event = self._waiting[host_id] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if self._waiting.get(host_id) is event:
                del self._waiting[host_id]

    def wake(self, host_ids: Iterable[int]) -> None:
        """Wake the held requests of these hosts (no-op for hosts not waiting)."""
        for host_id in host_ids:
            event = self._waiting.get(host_id)
            if event is not None:
                event.set()

    def wake_all(self) -> None:
        """Wake every held request (e.g. a campaign targeting all hosts)."""
        for event in self._waiting.values():
            event.set()
