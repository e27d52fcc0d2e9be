"""The bus between server nodes: broadcast messages and once-only job leases.

One node needs neither: `LocalBus` delivers nothing (there is no other node) and grants
every lease at once. A cluster uses `fleetwatch.bus.redis_bus.RedisBus`. Services talk to
the `Bus` protocol only, so the same code runs on one node and on many.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

#: A broadcast handler: called with the payload another node published.
Handler = Callable[[bytes], None]
#: A cache reload, run when another node changed what the cache holds.
Reload = Callable[[], Awaitable[None]]


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel background tasks and wait until each has ended; empties the list."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    tasks.clear()


def new_node_id() -> str:
    """A name for this process that no other node shares (host, pid and a counter)."""
    return f"{socket.gethostname()}-{os.getpid()}-{next(_NODE_SEQ)}"


_NODE_SEQ = itertools.count(1)


class Lease(Protocol):
    """A once-only job's right to run, held by one node at a time.

    `held` is checked before every side effect: a node whose lease lapsed (it could not
    renew in time, e.g. Redis unreachable) stops at once, even before another node takes
    over. `token` is the fencing token: it grows with every new holder, and what the job
    records (checkpoints) carries it, so a stale holder's late write can be refused.
    """

    name: str

    @property
    def held(self) -> bool: ...

    @property
    def token(self) -> int: ...

    async def wait_held(self) -> None:
        """Return once this node holds the lease."""
        ...


class Bus(Protocol):
    """Broadcasts between nodes, cache invalidation and leases."""

    node_id: str

    @property
    def clustered(self) -> bool:
        """True when other nodes may exist (a shared Redis)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, channel: str, payload: bytes) -> None:
        """Send `payload` to every other node's handler of `channel` (fire and forget)."""
        ...

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call `handler` with every payload another node publishes on `channel`."""
        ...

    def lease(self, name: str) -> Lease:
        """The lease of the once-only job `name` (one object per name)."""
        ...

    def health(self) -> dict[str, Any]:
        """What the bus can say about its state, for /healthz."""
        ...


class Invalidations:
    """Tells other nodes that a cached table changed, and reloads caches when told.

    Services that keep a table in memory (enroll secrets, agent config, teams, labels)
    register a reload; whoever changes the table calls `changed(topic)` after the commit.
    """

    CHANNEL = "invalidate"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._reloads: dict[str, list[Reload]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        bus.subscribe(self.CHANNEL, self._on_message)
        # Announcements made while this node was cut off from the bus are lost: reload all.
        bus.subscribe("reconnected", self._reload_all)

    def register(self, topic: str, reload: Reload) -> None:
        """Run `reload` whenever another node reports a change of `topic`."""
        self._reloads.setdefault(topic, []).append(reload)

    def changed(self, topic: str) -> None:
        """Report a committed change of `topic` to the other nodes."""
        self.bus.publish(self.CHANNEL, topic.encode())

    def _on_message(self, payload: bytes) -> None:
        self._start(self._reloads.get(payload.decode(), []))

    def _reload_all(self, _payload: bytes) -> None:
        self._start([r for reloads in self._reloads.values() for r in reloads])

    def _start(self, reloads: list[Reload]) -> None:
        for reload in reloads:
            task = asyncio.get_running_loop().create_task(self._run(reload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, reload: Reload) -> None:
        try:
            await reload()
        except Exception:  # a failed reload must not take the bus down; the next one retries
            import logging

            logging.getLogger(__name__).exception("cache reload failed")


class LocalLease:
    """The lease of a single node: always held."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def held(self) -> bool:
        return True

    @property
    def token(self) -> int:
        return 1

    async def wait_held(self) -> None:
        return None


class LocalBus:
    """The bus of a single node: nobody to tell, every lease held."""

    def __init__(self) -> None:
        self.node_id = new_node_id()
        self._leases: dict[str, LocalLease] = {}

    @property
    def clustered(self) -> bool:
        return False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def publish(self, channel: str, payload: bytes) -> None:
        return None

    def subscribe(self, channel: str, handler: Handler) -> None:
        return None

    def lease(self, name: str) -> LocalLease:
        if name not in self._leases:
            self._leases[name] = LocalLease(name)
        return self._leases[name]

    def health(self) -> dict[str, Any]:
        return {"mode": "single-node"}
