"""Login rate limiting: a token bucket per (email, client address), like Fleet's 10/min.

On one node the buckets are in memory. On a cluster they are in Redis, shared by every
node, so spreading guesses over the nodes behind a load balancer gains nothing; if Redis is
unreachable each node falls back to its own buckets (still limited, never unlimited).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

#: Attempts allowed in a burst, and how many come back per minute.
BURST = 10
PER_MINUTE = 10.0
_MAX_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class LoginLimiter:
    """Answers whether one more login attempt is allowed, and when the next one will be."""

    def __init__(self, burst: int = BURST, per_minute: float = PER_MINUTE) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def attempt(self, email: str, address: str, now: float | None = None) -> float:
        """0 when the attempt may go ahead (and is counted), else seconds to wait."""
        now = time.monotonic() if now is None else now
        key = (email.strip().lower(), address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._buckets.clear()  # bounded memory under a spray of addresses
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def succeeded(self, email: str, address: str) -> None:
        """A good login refills the bucket: the limit is for guessing, not for using."""
        self._buckets.pop((email.strip().lower(), address), None)

    async def check(self, email: str, address: str) -> float:
        """`attempt`, for callers that may be given the shared (Redis) limiter."""
        return self.attempt(email, address)

    async def reset(self, email: str, address: str) -> None:
        """`succeeded`, for callers that may be given the shared (Redis) limiter."""
        self.succeeded(email, address)


#: The bucket in Redis: refill by elapsed time (Redis's own clock, the same for every
#: node), take one token or say how long to wait.
_BUCKET = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('hmget', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(b[1]) or burst
local stamp = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('hset', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('expire', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


class SharedLoginLimiter(LoginLimiter):
    """The limiter of a cluster: buckets in Redis, the local ones if Redis is away."""

    def __init__(self, client: Redis, burst: int = BURST, per_minute: float = PER_MINUTE) -> None:
        super().__init__(burst, per_minute)
        self.client = client

    @staticmethod
    def _key(email: str, address: str) -> str:
        return f"fleetwatch:login:{email.strip().lower()}|{address}"

    async def check(self, email: str, address: str) -> float:
        try:
            wait = await self.client.eval(
                _BUCKET, 1, self._key(email, address), str(self.burst), str(self.rate)
            )
            return float(wait)
        except (RedisError, OSError):
            return self.attempt(email, address)

    async def reset(self, email: str, address: str) -> None:
        self.succeeded(email, address)
        try:
            await self.client.delete(self._key(email, address))
        except (RedisError, OSError):
            pass
