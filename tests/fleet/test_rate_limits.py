"""Failure limits: only failures count, successes give their token back, buckets refill, memory is
bounded, and a cluster's nodes share the buckets in Redis (each its own without Redis)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from fleetwatch.fleet.rate_limits import FailureLimiter, SharedFailureLimiter, address_key
from tests.services import RedisServer


def test_failures_empty_the_bucket_and_time_refills_it() -> None:
    limiter = FailureLimiter("enroll", burst=3, per_minute=6)  # one back every 10 s
    for _ in range(10):  # successes give their token back: they count nothing
        assert limiter.attempt_now("1.2.3.4", now=0.0) == 0
        limiter.refund_now("1.2.3.4")
    assert [limiter.attempt_now("1.2.3.4", now=0.0) for _ in range(3)] == [0, 0, 0]  # failed
    assert limiter.attempt_now("1.2.3.4", now=0.0) == pytest.approx(10.0)
    assert limiter.attempt_now("1.2.3.4", now=4.0) == pytest.approx(6.0)
    assert limiter.attempt_now("5.6.7.8", now=0.0) == 0  # another address
    assert limiter.attempt_now("1.2.3.4", now=10.5) == 0  # one back, taken and failed
    assert limiter.attempt_now("1.2.3.4", now=10.5) == pytest.approx(9.5)
    # a refused attempt takes nothing: the bucket never goes below empty
    assert limiter.attempt_now("1.2.3.4", now=10.5) == pytest.approx(9.5)


def test_memory_is_bounded_least_recently_used_first() -> None:
    limiter = FailureLimiter("enroll", burst=1, per_minute=1, max_keys=2)
    limiter.attempt_now("a", now=0.0)
    limiter.attempt_now("b", now=0.0)
    assert limiter.attempt_now("a", now=0.0) > 0  # a is now the most recently used
    limiter.attempt_now("c", now=0.0)
    assert limiter.attempt_now("a", now=0.0) > 0
    assert limiter.attempt_now("c", now=0.0) > 0
    assert limiter.attempt_now("b", now=0.0) == 0  # dropped (a new, full bucket)


async def test_nodes_share_the_buckets(redis_url: str) -> None:
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        node_one = SharedFailureLimiter(one, "enroll-test", burst=4, per_minute=1)
        node_two = SharedFailureLimiter(two, "enroll-test", burst=4, per_minute=1)
        assert await node_one.attempt("9.9.9.9") == 0
        await node_one.refund("9.9.9.9")  # a success counts nothing
        for i in range(4):  # failures spread over two nodes count together
            assert await (node_one, node_two)[i % 2].attempt("9.9.9.9") == 0
        assert await node_one.attempt("9.9.9.9") > 0
        assert await node_two.attempt("9.9.9.9") > 0
        assert await node_two.attempt("8.8.8.8") == 0
        other = SharedFailureLimiter(one, "other-limit", burst=4, per_minute=1)
        assert await other.attempt("9.9.9.9") == 0  # limits are kept apart by name
    finally:
        await one.aclose()
        await two.aclose()


async def test_without_redis_each_node_still_limits() -> None:
    redis = RedisServer.start()  # this test's own: it is killed
    client = aioredis.Redis.from_url(redis.url, socket_connect_timeout=1)
    redis.kill()
    try:
        limiter = SharedFailureLimiter(client, "enroll", burst=2, per_minute=1)
        assert [await limiter.attempt("1.1.1.1") for _ in range(2)] == [0, 0]
        assert await limiter.attempt("1.1.1.1") > 0
    finally:
        await client.aclose()
        redis.stop()


def test_an_attempt_takes_its_token_before_the_work_and_a_success_gives_it_back() -> None:
    limiter = FailureLimiter("enroll", burst=2, per_minute=6)  # one back every 10 s
    # two attempts in flight at once take both tokens: a third must wait, though neither
    # has failed yet
    assert [limiter.attempt_now("1.2.3.4", now=0.0) for _ in range(2)] == [0, 0]
    assert limiter.attempt_now("1.2.3.4", now=0.0) == pytest.approx(10.0)
    limiter.refund_now("1.2.3.4")  # one of them succeeded
    assert limiter.attempt_now("1.2.3.4", now=0.0) == 0
    assert limiter.attempt_now("1.2.3.4", now=0.0) > 0
    limiter.refund_now("5.6.7.8")  # nothing to give back to: no bucket is made
    assert limiter.attempt_now("5.6.7.8", now=0.0) == 0


async def test_nodes_share_attempts_in_flight(redis_url: str) -> None:
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        node_one = SharedFailureLimiter(one, "attempt-test", burst=2, per_minute=1)
        node_two = SharedFailureLimiter(two, "attempt-test", burst=2, per_minute=1)
        assert await node_one.attempt("8.8.8.8") == 0
        assert await node_two.attempt("8.8.8.8") == 0
        assert await node_one.attempt("8.8.8.8") > 0  # both taken, neither failed yet
        await node_two.refund("8.8.8.8")
        assert await node_one.attempt("8.8.8.8") == 0
        assert await node_two.attempt("8.8.8.8") > 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_forgetting_a_key_gives_it_a_full_burst_on_every_node(redis_url: str) -> None:
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        node_one = SharedFailureLimiter(one, "forget", burst=2, per_minute=1.0)
        node_two = SharedFailureLimiter(two, "forget", burst=2, per_minute=1.0)
        assert [await node_one.attempt("k") for _ in range(2)] == [0.0, 0.0]
        assert await node_two.attempt("k") > 0
        await node_one.forget("k")
        assert [await node_two.attempt("k") for _ in range(2)] == [0.0, 0.0]
        assert await node_two.attempt("k") > 0
    finally:
        await one.aclose()
        await two.aclose()
    local = FailureLimiter("forget", burst=1, per_minute=1.0)
    assert local.attempt_now("k", now=0.0) == 0 and local.attempt_now("k", now=0.0) > 0
    local.forget_now("k")
    assert "k" not in local and local.attempt_now("k", now=0.0) == 0


def test_looking_whether_a_key_is_blocked_takes_nothing() -> None:
    limiter = FailureLimiter("enroll", burst=2, per_minute=6)  # one back every 10 s
    assert limiter.blocked_now("1.2.3.4", now=0.0) == 0
    assert "1.2.3.4" not in limiter  # no bucket for a key only looked at
    assert [limiter.blocked_now("1.2.3.4", now=0.0) for _ in range(100)] == [0] * 100
    assert [limiter.attempt_now("1.2.3.4", now=0.0) for _ in range(2)] == [0, 0]
    assert limiter.blocked_now("1.2.3.4", now=0.0) == pytest.approx(10.0)
    assert limiter.blocked_now("1.2.3.4", now=10.0) == 0  # one is back, not taken by looking
    assert limiter.attempt_now("1.2.3.4", now=10.0) == 0


async def test_nodes_look_at_the_shared_buckets(redis_url: str) -> None:
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        node_one = SharedFailureLimiter(one, "blocked-test", burst=2, per_minute=1)
        node_two = SharedFailureLimiter(two, "blocked-test", burst=2, per_minute=1)
        assert [await node_one.blocked("9.9.9.9") for _ in range(10)] == [0.0] * 10
        assert [await node_two.attempt("9.9.9.9") for _ in range(2)] == [0.0, 0.0]
        assert await node_one.blocked("9.9.9.9") > 0  # failures on node two block it here
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:9", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("", ""),
        ("unix:/run/fw.sock", "unix:/run/fw.sock"),
    ],
)
def test_an_address_is_keyed_by_itself_for_ipv4_and_by_its_64_for_ipv6(
    address: str, key: str
) -> None:
    assert address_key(address) == key


def test_rotating_ipv6_addresses_within_a_64_shares_one_bucket() -> None:
    limiter = FailureLimiter("enroll", burst=3, per_minute=1)
    waits = [limiter.attempt_now(address_key(f"2001:db8:5:6::{n:x}"), 0.0) for n in range(1, 6)]
    assert waits[:3] == [0, 0, 0] and all(w > 0 for w in waits[3:])
    # the next /64 is another client
    assert limiter.attempt_now(address_key("2001:db8:5:7::1"), 0.0) == 0
