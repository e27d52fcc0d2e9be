"""The cluster bus on Redis: pub/sub broadcasts and leases with fencing tokens.

Broadcasts are fire and forget: a message published while Redis is down is lost, so
nothing that must not be lost travels only here (the change log is in PostgreSQL and
every node catches up from it; see `fleetwatch.bus.change_fanout`). Leases are Redis keys
set with NX and a TTL, renewed by their holder; each new holder gets the next value of a
per-lease counter as its fencing token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fleetwatch.bus.bus import Handler, cancel_all, new_node_id

log = logging.getLogger(__name__)

PREFIX = "fleetwatch:"
#: Seconds between reconnection attempts after Redis went away.
RECONNECT_DELAY = 0.5

_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 0 then
  local token = redis.call('incr', KEYS[2])
  redis.call('set', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
  return token
end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLease:
    """A lease kept by a background task: acquired when free, renewed while held."""

    def __init__(self, bus: RedisBus, name: str, ttl: float) -> None:
        self.bus = bus
        self.name = name
        self.ttl = ttl
        self._token = 0
        #: Monotonic time until which this node may act (renewal start + 80 % of the TTL,
        #: so a lapsed holder stops before Redis lets another node in).
        self._valid_until = 0.0
        self._acquired = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        return self._token > 0 and time.monotonic() < self._valid_until

    @property
    def token(self) -> int:
        return self._token

    async def wait_held(self) -> None:
        while not self.held:
            self._acquired.clear()
            try:
                await asyncio.wait_for(self._acquired.wait(), self.ttl / 3)
            except TimeoutError:
                continue

    def _key(self) -> str:
        return f"{PREFIX}lease:{self.name}"

    def _value(self) -> str:
        return f"{self.bus.node_id}:{self._token}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name=f"fleetwatch-lease-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._token:
            # Hand over at once on a clean shutdown instead of making others wait the TTL.
            with contextlib.suppress(RedisError, OSError):
                await _eval(self.bus.redis, _RELEASE, [self._key()], [self._value()])
            self._token = 0
            self._valid_until = 0.0

    async def _keep(self) -> None:
        ms = str(int(self.ttl * 1000))
        while True:
            started = time.monotonic()
            try:
                if self._token:
                    renewed = await _eval(
                        self.bus.redis, _RENEW, [self._key()], [self._value(), ms]
                    )
                    if renewed:
                        self._valid_until = started + self.ttl * 0.8
                    else:
                        log.warning("lease %s lost (token %d)", self.name, self._token)
                        self._token = 0
                        self._valid_until = 0.0
                if not self._token:
                    token = await _eval(
                        self.bus.redis,
                        _ACQUIRE,
                        [self._key(), f"{PREFIX}fence:{self.name}"],
                        [self.bus.node_id, ms],
                    )
                    if token:
                        self._token = int(token)
                        self._valid_until = started + self.ttl * 0.8
                        log.info("lease %s acquired (token %d)", self.name, self._token)
                        self._acquired.set()
            except (RedisError, OSError) as exc:
                # Keep what is still valid locally; `held` turns false when it runs out.
                log.debug("lease %s: redis unavailable: %s", self.name, exc)
            await asyncio.sleep(self.ttl / 3)


class RedisBus:
    """Broadcasts and leases over one Redis server shared by the cluster."""

    def __init__(self, url: str, *, lease_ttl: float = 3.0) -> None:
        self.url = url
        self.node_id = new_node_id()
        self.lease_ttl = lease_ttl
        self.redis: aioredis.Redis = aioredis.Redis.from_url(url, socket_timeout=5.0)
        self._handlers: dict[str, list[Handler]] = {}
        self._leases: dict[str, RedisLease] = {}
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=10_000)
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False
        self._last_error: str | None = None
        self.dropped = 0
        self._subscribed = asyncio.Event()

    @property
    def clustered(self) -> bool:
        return True

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="fleetwatch-bus-listen"),
            asyncio.create_task(self._send(), name="fleetwatch-bus-send"),
        ]
        # Wait (briefly) for the subscription, so a broadcast right after start is heard.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5.0)
        for lease in self._leases.values():
            lease.start()

    async def stop(self) -> None:
        for lease in self._leases.values():
            await lease.stop()
        await cancel_all(self._tasks)
        await self.redis.aclose()

    def publish(self, channel: str, payload: bytes) -> None:
        try:
            self._outbox.put_nowait((channel, payload))
        except asyncio.QueueFull:
            self.dropped += 1  # receivers catch up from the store; see module docstring

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(channel, []).append(handler)

    def lease(self, name: str) -> RedisLease:
        if name not in self._leases:
            lease = self._leases[name] = RedisLease(self, name, self.lease_ttl)
            if self._tasks:
                lease.start()
        return self._leases[name]

    def health(self) -> dict[str, Any]:
        return {
            "mode": "cluster",
            "node": self.node_id,
            "redis": "ok" if self._connected else "unreachable",
            "redis_error": None if self._connected else self._last_error,
            "leases": sorted(name for name, lease in self._leases.items() if lease.held),
        }

    async def _send(self) -> None:
        while True:
            channel, payload = await self._outbox.get()
            message = self.node_id.encode() + b"\n" + payload
            try:
                await self.redis.publish(PREFIX + channel, message)
            except (RedisError, OSError) as exc:
                self._note_error(exc)
                self.dropped += 1

    async def _listen(self) -> None:
        lost = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(PREFIX + "*")
                self._connected = True
                self._subscribed.set()
                if lost:
                    # Once per outage, after subscribing again: what was published meanwhile
                    # is read from the store (nothing published from now on is missed).
                    lost = False
                    self._on_reconnect()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    self._dispatch(str(message["channel"].decode()), bytes(message["data"]))
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                raise
            except (RedisError, OSError) as exc:
                self._note_error(exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                await asyncio.sleep(RECONNECT_DELAY)
                lost = True

    def _on_reconnect(self) -> None:
        # Messages sent while we were away are gone: let every handler know, so the
        # change feed re-reads the store.
        for handler in self._handlers.get("reconnected", []):
            handler(b"")

    def _dispatch(self, channel: str, data: bytes) -> None:
        sender, _, payload = data.partition(b"\n")
        if sender.decode() == self.node_id:
            return
        for handler in self._handlers.get(channel.removeprefix(PREFIX), []):
            try:
                handler(payload)
            except Exception:
                log.exception("bus handler for %s failed", channel)

    def _note_error(self, exc: BaseException) -> None:
        if self._connected:
            log.warning("redis unreachable: %s", exc)
        self._connected = False
        self._last_error = str(exc) or type(exc).__name__


async def _eval(client: aioredis.Redis, script: str, keys: list[str], args: list[str]) -> Any:
    return await client.eval(script, len(keys), *keys, *args)
