"""Login limits: one node's buckets, and a cluster's shared ones in Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from fleetwatch.fleet.login_limits import BURST, LoginLimiter, SharedLoginLimiter
from tests.services import RedisServer


def test_a_burst_then_a_wait_and_success_refills() -> None:
    limiter = LoginLimiter()
    assert all(limiter.attempt("A@x.org", "1.2.3.4", now=0.0) == 0 for _ in range(BURST))
    wait = limiter.attempt("a@x.org", "1.2.3.4", now=0.0)
    assert 5.9 < wait <= 6.0  # 10 a minute: one back every 6 s
    assert limiter.attempt("a@x.org", "5.6.7.8", now=0.0) == 0  # another address
    limiter.succeeded("a@x.org", "1.2.3.4")
    assert limiter.attempt("a@x.org", "1.2.3.4", now=0.0) == 0


async def test_nodes_share_the_buckets(redis_url: str) -> None:
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        node_one, node_two = SharedLoginLimiter(one), SharedLoginLimiter(two)
        for i in range(BURST):  # guesses spread over two nodes count together
            assert await (node_one, node_two)[i % 2].check("a@x.org", "9.9.9.9") == 0
        assert await node_one.check("a@x.org", "9.9.9.9") > 0
        assert await node_two.check("a@x.org", "9.9.9.9") > 0
        assert await node_two.check("b@x.org", "9.9.9.9") == 0
        await node_one.reset("a@x.org", "9.9.9.9")  # a good login on one node
        assert await node_two.check("a@x.org", "9.9.9.9") == 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_without_redis_each_node_still_limits(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url, socket_connect_timeout=1)
    redis_server.kill()
    try:
        limiter = SharedLoginLimiter(client)
        waits = [await limiter.check("a@x.org", "1.1.1.1") for _ in range(BURST + 1)]
        assert waits[:BURST] == [0.0] * BURST and waits[-1] > 0
    finally:
        redis_server.restart()
        await client.aclose()
