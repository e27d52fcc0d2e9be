"""The Redis bus: broadcasts between nodes, leases with fencing, surviving a Redis restart."""

from __future__ import annotations

import asyncio
import time

from fleetwatch.bus.redis_bus import RedisBus
from tests.services import RedisServer


async def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_broadcast_reaches_other_nodes_not_the_sender(redis_url: str) -> None:
    a, b = RedisBus(redis_url), RedisBus(redis_url)
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    a.subscribe("news", got_a.append)
    b.subscribe("news", got_b.append)
    await a.start()
    await b.start()
    try:
        for i in range(50):
            a.publish("news", f"m{i}".encode())
        await _until(lambda: len(got_b) == 50)
        assert got_b == [f"m{i}".encode() for i in range(50)]  # in order
        assert got_a == []
        assert a.health()["redis"] == "ok"
    finally:
        await a.stop()
        await b.stop()


async def test_one_holder_per_lease_and_takeover_with_a_higher_token(redis_url: str) -> None:
    a, b = RedisBus(redis_url, lease_ttl=0.6), RedisBus(redis_url, lease_ttl=0.6)
    la, lb = a.lease("sweeper"), b.lease("sweeper")
    await a.start()
    await asyncio.wait_for(la.wait_held(), 5)
    await b.start()
    try:
        await asyncio.sleep(1.0)  # several renewals: a keeps it, b never gets it
        assert la.held and not lb.held
        first = la.token
        # a dies without releasing (as with SIGKILL): its keeper simply stops.
        assert la._task is not None
        la._task.cancel()
        await asyncio.wait_for(lb.wait_held(), 5)
        assert lb.token > first
        assert not la.held  # a's local validity ran out before b could take over
    finally:
        await b.stop()
        la._token = 0  # do not release b's lease in a's clean-up
        await a.stop()


async def test_clean_stop_hands_the_lease_over_at_once(redis_url: str) -> None:
    a, b = RedisBus(redis_url, lease_ttl=30), RedisBus(redis_url, lease_ttl=30)
    la = a.lease("webhooks")
    await a.start()
    await asyncio.wait_for(la.wait_held(), 5)
    lb = b.lease("webhooks")
    await b.start()
    await a.stop()
    try:
        # With a 30 s TTL, only the release explains a takeover within a few seconds.
        await asyncio.wait_for(lb.wait_held(), 15)
    finally:
        await b.stop()


async def test_survives_a_redis_restart(redis_server: RedisServer, redis_url: str) -> None:
    a, b = RedisBus(redis_url, lease_ttl=0.6), RedisBus(redis_url, lease_ttl=0.6)
    got: list[bytes] = []
    reconnected: list[bytes] = []
    b.subscribe("news", got.append)
    b.subscribe("reconnected", reconnected.append)
    lease = a.lease("job")
    await a.start()
    await b.start()
    try:
        await asyncio.wait_for(lease.wait_held(), 5)
        redis_server.kill()
        await _until(lambda: b.health()["redis"] == "unreachable")
        await _until(lambda: not lease.held)  # no renewal possible: the job must stop
        redis_server.restart()
        await _until(lambda: b.health()["redis"] == "ok")
        assert reconnected  # the change feed re-reads the store on this signal
        await asyncio.wait_for(lease.wait_held(), 10)

        async def delivered() -> None:
            while not got:
                a.publish("news", b"after")
                await asyncio.sleep(0.1)

        await asyncio.wait_for(delivered(), 10)
        assert got[0] == b"after"
    finally:
        await a.stop()
        await b.stop()
