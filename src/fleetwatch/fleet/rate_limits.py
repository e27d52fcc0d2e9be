"""Failure limits: a token bucket per key (e.g. failed enrolls per client address).

A client address is keyed by `address_key`: IPv4 by the address, IPv6 by its /64.

A key's bucket holds `burst` tokens and gets `per_minute` back a minute. Two ways to use it:

- take a token before the work (`attempt`) and give a success's back (`refund`), when the
  outcome is known only after awaits (a login checks a password hash): attempts in flight at
  once cannot all pass a check none of them has counted yet;
- decide first, then spend only on a failure (`attempt`) and merely look on a success
  (`blocked`), when the outcome is known at once (an enroll secret is compared in memory):
  then successes never hold a token, however many are in flight, and a request abandoned
  half-way has taken nothing.

A key without tokens is told how long to wait and takes nothing, so it cannot learn
anything (not even whether a guess would have been right) until one is back.

On one node the buckets are in memory (at most `max_keys`, least recently used dropped
first). On a cluster they are in Redis, shared by every node, so spreading guesses over the
nodes behind a load balancer gains nothing; if Redis is unreachable each node falls back to
its own buckets (still limited, never unlimited).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address

from redis.asyncio import Redis
from redis.exceptions import RedisError

#: Buckets kept in memory at most (a spray of addresses cannot grow memory without bound).
MAX_KEYS = 100_000
#: The IPv6 prefix one client is counted by: a subscriber is usually given a whole /64
#: (SLAAC, privacy addresses) and can use a new address in it for every request.
IPV6_CLIENT_PREFIX = 64


def address_key(address: str) -> str:
    """The key a client address's failures count under: an IPv4 address as it is, an IPv6
    address as its /64 (e.g. `2001:db8:1:2::/64`), so rotating addresses within the /64 a
    client holds gains nothing; an IPv4-mapped IPv6 address counts as its IPv4 address.
    Anything that is not an address (empty, a unix socket path) is its own key."""
    try:
        parsed = ip_address(address.split("%", 1)[0])  # a zone id names no other client
    except ValueError:
        return address
    if not isinstance(parsed, IPv6Address):
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class FailureLimiter:
    """One node's buckets: `attempt` before the work, `refund` after a success."""

    def __init__(self, name: str, burst: int, per_minute: float, max_keys: int = MAX_KEYS) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("a failure limit needs burst >= 1 and per_minute > 0")
        self.name = name
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            self._buckets.move_to_end(key)
        return bucket

    def _wait(self, bucket: _Bucket) -> float:
        if bucket.tokens >= 1.0:
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def attempt_now(self, key: str, now: float | None = None) -> float:
        """Take a token for an attempt about to be made (0), or say how long to wait (and
        take nothing). Taken before the work, so attempts in flight at once cannot all pass
        a check that none of them has counted yet; `refund_now` gives a success's back."""
        now = time.monotonic() if now is None else now
        bucket = self._refilled(key, now)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        wait = self._wait(bucket)
        if wait == 0:
            bucket.tokens -= 1.0
        return wait

    def blocked_now(self, key: str, now: float | None = None) -> float:
        """How long the key must wait before its next attempt (0: it may go ahead); takes
        nothing and keeps no bucket for a key it has not seen."""
        bucket = self._refilled(key, time.monotonic() if now is None else now)
        return 0.0 if bucket is None else self._wait(bucket)

    def refund_now(self, key: str) -> None:
        """Give back the token of an attempt that did not fail."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)

    def forget_now(self, key: str) -> None:
        """Drop the key's bucket: its next attempt starts with a full burst."""
        self._buckets.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._buckets

    async def attempt(self, key: str) -> float:
        """`attempt_now`, for callers that may be given the shared (Redis) limiter."""
        return self.attempt_now(key)

    async def blocked(self, key: str) -> float:
        """`blocked_now`, for callers that may be given the shared (Redis) limiter."""
        return self.blocked_now(key)

    async def refund(self, key: str) -> None:
        """`refund_now`, for callers that may be given the shared (Redis) limiter."""
        self.refund_now(key)

    async def forget(self, key: str) -> None:
        """`forget_now`, for callers that may be given the shared (Redis) limiter."""
        self.forget_now(key)


#: An attempt in Redis: ARGV[3] 1 takes a token when there is one (answering 0) or answers
#: how long to wait, taking nothing; -1 gives a token back (an attempt that succeeded); 0
#: only answers how long to wait.
_ATTEMPT = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('hmget', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(b[1]) or burst
local stamp = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - stamp) * rate)
local wait = 0
if cost == 0 then
  if tokens < 1 then wait = (1 - tokens) / rate end
  return tostring(wait)
elseif cost > 0 then
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
else
  tokens = math.min(burst, tokens + 1)
end
redis.call('hset', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('expire', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


class SharedFailureLimiter(FailureLimiter):
    """The limiter of a cluster: buckets in Redis, this node's own if Redis is away."""

    def __init__(
        self, client: Redis, name: str, burst: int, per_minute: float, max_keys: int = MAX_KEYS
    ) -> None:
        super().__init__(name, burst, per_minute, max_keys)
        self.client = client

    def _key(self, key: str) -> str:
        return f"fleetwatch:limit:{self.name}:{key}"

    async def attempt(self, key: str) -> float:
        try:
            wait = await self.client.eval(
                _ATTEMPT, 1, self._key(key), str(self.burst), str(self.rate), "1"
            )
            return float(wait)
        except (RedisError, OSError):
            return self.attempt_now(key)

    async def blocked(self, key: str) -> float:
        try:
            wait = await self.client.eval(
                _ATTEMPT, 1, self._key(key), str(self.burst), str(self.rate), "0"
            )
            return float(wait)
        except (RedisError, OSError):
            return self.blocked_now(key)

    async def refund(self, key: str) -> None:
        try:
            await self.client.eval(
                _ATTEMPT, 1, self._key(key), str(self.burst), str(self.rate), "-1"
            )
        except (RedisError, OSError):
            self.refund_now(key)

    async def forget(self, key: str) -> None:
        self.forget_now(key)
        try:
            await self.client.delete(self._key(key))
        except (RedisError, OSError):
            pass  # this node's bucket is gone; the shared one refills by itself
