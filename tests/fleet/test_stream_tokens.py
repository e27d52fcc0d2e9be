"""Streams end when their token does: on the revoking node at once, on the others when told
over the bus, and by the periodic re-check (revoked elsewhere, or a session gone idle), on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import orjson

from fleetwatch.bus.bus import Handler, LocalBus
from fleetwatch.fleet.stream_quota import StreamQuota
from fleetwatch.fleet.stream_tokens import INVALID, StreamTokenWatch
from fleetwatch.fleet.users import UserService, hash_token
from fleetwatch.storage import Database

STRONG = "a strong enough passphrase"


class RecordingBus(LocalBus):
    """A single node's bus that keeps what is published and lets a test deliver messages."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, bytes]] = []
        self.handlers: dict[str, Handler] = {}

    def publish(self, channel: str, payload: bytes) -> None:
        self.published.append((channel, payload))

    def subscribe(self, channel: str, handler: Handler) -> None:
        self.handlers[channel] = handler


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_revocation_ends_matching_streams_here_and_is_told_to_the_others(
    db: Database,
) -> None:
    users = UserService(db)
    quota = StreamQuota(10)
    bus = RecordingBus()
    StreamTokenWatch(users, quota, bus, interval=3600)
    user = await users.create("u@x.org", STRONG)
    other = await users.create("o@x.org", STRONG)
    first, second = await users.issue_token(user.id), await users.issue_token(user.id)
    theirs = await users.issue_token(other.id)
    a = quota.acquire(user.id, hash_token(first))
    b = quota.acquire(user.id, hash_token(second))
    c = quota.acquire(other.id, hash_token(theirs))
    ended = a.ended
    await users.revoke_token(first)  # logout
    assert ended.done() and "logged out" in ended.result()
    assert b.ended_reason is None and c.ended_reason is None
    channel, payload = bus.published[-1]
    assert channel == StreamTokenWatch.CHANNEL
    told = orjson.loads(payload)
    # other nodes get the user id and the token id (16 characters of the hash), no more
    assert told["token_prefix"] == hash_token(first)[:16] and told["user_id"] is None
    await users.update(user.id, password="another strong passphrase")
    assert "password changed" in (b.ended_reason or "")
    assert c.ended_reason is None
    assert orjson.loads(bus.published[-1][1])["user_id"] == user.id
    assert quota.token_hashes() == {hash_token(theirs)}


async def test_a_revocation_told_by_another_node_ends_the_streams_of_the_token(
    db: Database,
) -> None:
    users = UserService(db)
    quota = StreamQuota(10)
    bus = RecordingBus()
    StreamTokenWatch(users, quota, bus, interval=3600)
    deliver = bus.handlers[StreamTokenWatch.CHANNEL]
    a = quota.acquire(1, "ab" * 32)
    b = quota.acquire(2, "cd" * 32)
    for malformed in (b"not json", b"[]", b"{}", b'{"user_id": "1"}', b'{"token_prefix": ""}'):
        deliver(malformed)  # never matches every stream
    assert a.ended_reason is None and b.ended_reason is None
    deliver(orjson.dumps({"reason": "the token was revoked", "token_prefix": "ab" * 8}))
    assert a.ended_reason == "the token was revoked" and b.ended_reason is None
    deliver(orjson.dumps({"reason": "the user was deleted", "user_id": 2}))
    assert b.ended_reason == "the user was deleted"
    a.release()
    b.release()
    assert quota.open_streams(1) == quota.open_streams(2) == 0


async def test_the_periodic_check_ends_streams_of_tokens_gone_or_idle(db: Database) -> None:
    clock = Clock()
    users = UserService(db, session_idle_timeout=100.0, clock=clock)
    quota = StreamQuota(10)
    watch = StreamTokenWatch(users, quota, RecordingBus(), interval=0.05)
    user = await users.create("u@x.org", STRONG)
    session = await users.issue_token(user.id)
    api = await users.issue_token(user.id, "ci", "api")
    gone = await users.issue_token(user.id, "old", "api")
    on_session = quota.acquire(user.id, hash_token(session))
    on_api = quota.acquire(user.id, hash_token(api))
    on_gone = quota.acquire(user.id, hash_token(gone))
    # revoked by another process (no announcement reaches this node)
    other_process = UserService(db)
    await other_process.revoke_token(gone)
    await watch.check()
    assert on_gone.ended_reason == INVALID
    assert on_session.ended_reason is None and on_api.ended_reason is None
    clock.now += 101  # an open stream is not a use: the session goes idle
    watch.start()
    try:
        await asyncio.wait_for(on_session.ended, 10)
    finally:
        await watch.stop()
    assert on_session.ended_reason == INVALID and on_api.ended_reason is None
