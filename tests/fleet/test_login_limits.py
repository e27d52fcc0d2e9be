"""Login limits: one node's buckets, and a cluster's shared ones in Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from fleetwatch.fleet.login_limits import ADDRESS_LIMIT, BURST, LoginLimiter, SharedLoginLimiter
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


def test_one_address_may_fail_30_times_a_minute_over_all_emails() -> None:
    limiter = LoginLimiter()
    sprayed = [limiter.attempt(f"user{i}@x.org", "1.2.3.4", now=0.0) for i in range(ADDRESS_LIMIT)]
    assert sprayed == [0.0] * ADDRESS_LIMIT
    wait = limiter.attempt("someone-else@x.org", "1.2.3.4", now=0.0)
    assert 1.9 < wait <= 2.0  # 30 a minute: one back every 2 s
    assert limiter.attempt("someone-else@x.org", "1.2.3.4", now=2.0) == 0
    assert limiter.attempt("user0@x.org", "5.6.7.8", now=0.0) == 0  # another address
    small = LoginLimiter(address_limit=3)
    assert [small.attempt(f"u{i}@x.org", "9.9.9.9", now=0.0) for i in range(4)][-1] > 0


def test_good_logins_do_not_count_against_the_address() -> None:
    limiter = LoginLimiter()
    for i in range(10 * ADDRESS_LIMIT):
        assert limiter.attempt(f"user{i % 7}@x.org", "1.2.3.4", now=0.0) == 0
        limiter.succeeded(f"user{i % 7}@x.org", "1.2.3.4")
    failures = [limiter.attempt(f"guess{i}@x.org", "1.2.3.4", now=0.0) for i in range(31)]
    assert failures[:ADDRESS_LIMIT] == [0.0] * ADDRESS_LIMIT and failures[-1] > 0


def test_beyond_max_keys_the_least_recently_used_buckets_go() -> None:
    limiter = LoginLimiter(max_keys=3)
    for _ in range(BURST):  # a guesser is limited ...
        limiter.attempt("victim@x.org", "6.6.6.6", now=0.0)
    assert limiter.attempt("victim@x.org", "6.6.6.6", now=0.0) > 0
    limiter.attempt("a@x.org", "1.1.1.1", now=0.0)
    limiter.attempt("b@x.org", "2.2.2.2", now=0.0)
    assert limiter.attempt("victim@x.org", "6.6.6.6", now=0.0) > 0  # in use again: kept
    limiter.attempt("c@x.org", "3.3.3.3", now=0.0)  # evicts a@ only, not the whole table
    assert not limiter.tracked("a@x.org", "1.1.1.1")
    assert limiter.tracked("b@x.org", "2.2.2.2") and limiter.tracked("c@x.org", "3.3.3.3")
    assert limiter.attempt("victim@x.org", "6.6.6.6", now=0.0) > 0  # ... and stays limited


async def test_nodes_share_the_address_limit(redis_url: str) -> None:
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        node_one, node_two = SharedLoginLimiter(one), SharedLoginLimiter(two)
        await node_one.check("good@x.org", "8.8.8.8")
        await node_one.reset("good@x.org", "8.8.8.8")  # a good login: does not count
        for i in range(ADDRESS_LIMIT):  # one password sprayed over accounts and nodes
            assert await (node_one, node_two)[i % 2].check(f"u{i}@x.org", "8.8.8.8") == 0
        assert await node_one.check("fresh@x.org", "8.8.8.8") > 0
        assert await node_two.check("fresh@x.org", "8.8.8.8") > 0
        assert await node_two.check("fresh@x.org", "7.7.7.7") == 0
    finally:
        await one.aclose()
        await two.aclose()


def test_ipv6_addresses_of_one_64_count_as_one_address() -> None:
    """A client holding a /64 cannot spray past the address limit by changing address."""
    limiter = LoginLimiter(address_limit=5)
    waits = [
        limiter.attempt(f"user{n}@x.org", f"2001:db8:9:9::{n + 1:x}", now=0.0) for n in range(8)
    ]
    assert waits[:5] == [0] * 5 and all(w > 0 for w in waits[5:])
    assert limiter.attempt("user0@x.org", "2001:db8:9:a::1", now=0.0) == 0  # another /64
    limiter.succeeded("user9@x.org", "2001:db8:9:9::ffff")  # gives the /64 its token back
    assert limiter.attempt("user9@x.org", "2001:db8:9:9::1234", now=0.0) == 0
