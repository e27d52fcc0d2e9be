"""Login rate limiting: two failure limits, per (email, client address) and per address.

The (email, address) limit is Fleet's 10 a minute: every attempt takes a token and a good
login refills it. The address limit stops one password being sprayed over many accounts:
it allows `address_limit` failed logins a minute from one address, whatever the emails;
an attempt takes a token from it too, and a good login gives that token back, so only
failures count there.

An address is counted by `address_key` (IPv4 the address, IPv6 its /64). Both are
`FailureLimiter`s (fleet/rate_limits.py): in memory on one node, in Redis on a
cluster (shared by every node, each node's own buckets if Redis is away).
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from fleetwatch.fleet.rate_limits import FailureLimiter, SharedFailureLimiter, address_key

#: Attempts allowed in a burst, and how many come back per minute, per (email, address).
BURST = 10
PER_MINUTE = 10.0
#: Failed logins a minute from one address, over all emails (the setting's default).
ADDRESS_LIMIT = 30
#: Buckets kept in memory per kind; beyond this the least recently used go.
MAX_KEYS = 100_000


class LoginLimiter:
    """Answers whether one more login attempt is allowed, and when the next one will be."""

    def __init__(
        self,
        burst: int = BURST,
        per_minute: float = PER_MINUTE,
        *,
        address_limit: int = ADDRESS_LIMIT,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.pairs = FailureLimiter("login", burst, per_minute, max_keys)
        self.addresses = FailureLimiter("login-addr", address_limit, address_limit, max_keys)

    @staticmethod
    def _pair(email: str, address: str) -> str:
        return f"{email.strip().lower()}|{address}"

    def attempt(self, email: str, address: str, now: float | None = None) -> float:
        """0 when the attempt may go ahead (and is counted), else seconds to wait."""
        address = address_key(address)
        now = time.monotonic() if now is None else now
        pair = self._pair(email, address)
        wait = self.pairs.attempt_now(pair, now)
        if wait == 0:
            wait = self.addresses.attempt_now(address, now)
            if wait > 0:  # not attempted after all: the pair keeps its token
                self.pairs.refund_now(pair)
        return wait

    def succeeded(self, email: str, address: str) -> None:
        """A good login refills the pair's bucket and gives the address its token back:
        the limits are for guessing, not for using."""
        address = address_key(address)
        self.pairs.forget_now(self._pair(email, address))
        self.addresses.refund_now(address)

    def tracked(self, email: str, address: str) -> bool:
        """Whether buckets for this pair and address are held in memory (for tests)."""
        address = address_key(address)
        return self._pair(email, address) in self.pairs and address in self.addresses

    async def check(self, email: str, address: str) -> float:
        """`attempt`, through the limiters' shared (Redis) buckets when they have them."""
        address = address_key(address)
        pair = self._pair(email, address)
        wait = await self.pairs.attempt(pair)
        if wait == 0:
            wait = await self.addresses.attempt(address)
            if wait > 0:
                await self.pairs.refund(pair)
        return wait

    async def reset(self, email: str, address: str) -> None:
        """`succeeded`, through the limiters' shared (Redis) buckets when they have them."""
        address = address_key(address)
        await self.pairs.forget(self._pair(email, address))
        await self.addresses.refund(address)


class SharedLoginLimiter(LoginLimiter):
    """The limiter of a cluster: buckets in Redis, the local ones if Redis is away."""

    def __init__(
        self,
        client: Redis,
        burst: int = BURST,
        per_minute: float = PER_MINUTE,
        *,
        address_limit: int = ADDRESS_LIMIT,
        max_keys: int = MAX_KEYS,
    ) -> None:
        super().__init__(burst, per_minute, address_limit=address_limit, max_keys=max_keys)
        self.pairs = SharedFailureLimiter(client, "login", burst, per_minute, max_keys)
        self.addresses = SharedFailureLimiter(
            client, "login-addr", address_limit, address_limit, max_keys
        )
