"""`SlotStreamingResponse`: a stream's slot is given back when its response ends, by any
path, and its body is closed then, not whenever the garbage collector finds it. Each test
holds a reference to the body generator, as a reference cycle would: the slot must not wait
for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from fleetwatch.api.sse import SlotStreamingResponse
from fleetwatch.fleet.stream_quota import StreamQuota


class Body:
    """An endless event body that records whether its `finally` ran."""

    def __init__(self) -> None:
        self.started = False
        self.closed = False

    async def events(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            while True:
                yield b"data: {}\n\n"
                await asyncio.sleep(0)
        finally:
            self.closed = True


def scope(spec_version: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}}


async def test_a_client_gone_before_the_response_starts_gives_the_slot_back() -> None:
    quota = StreamQuota(1)
    slot = quota.acquire(7, "hash")
    body = Body()
    events = body.events()  # held here, as a cycle would hold it

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise OSError("connection reset by peer")

    with pytest.raises(ClientDisconnect):
        await SlotStreamingResponse(events, slot)(scope("2.4"), receive, send)
    assert quota.open_streams(7) == 0 and not body.started
    assert quota.acquire(7, "hash") is not None  # the user may open another stream


async def test_a_client_gone_while_the_body_waits_on_a_full_socket_gives_it_back() -> None:
    """The body is suspended at a `yield` while the send waits (a full socket): Starlette
    cancels the send, not the body, so only the response can close it at once."""
    quota = StreamQuota(1)
    slot = quota.acquire(7, "hash")
    body = Body()
    events = body.events()
    sent = asyncio.Event()
    never = asyncio.Event()

    async def receive() -> Message:
        await sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            sent.set()
            await never.wait()  # the socket never drains

    await SlotStreamingResponse(events, slot)(scope("2.3"), receive, send)
    assert body.started and body.closed
    assert quota.open_streams(7) == 0


async def test_a_finished_or_cancelled_response_gives_it_back() -> None:
    quota = StreamQuota(2)

    async def short() -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        return None

    await SlotStreamingResponse(short(), quota.acquire(7, "a"))(scope("2.4"), receive, send)
    assert quota.open_streams(7) == 0

    body = Body()
    events = body.events()
    blocked = asyncio.Event()

    async def stuck(message: Message) -> None:
        blocked.set()
        await asyncio.Event().wait()

    response = SlotStreamingResponse(events, quota.acquire(7, "b"))
    task = asyncio.create_task(response(scope("2.4"), receive, stuck))
    await blocked.wait()
    assert quota.open_streams(7) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert quota.open_streams(7) == 0


async def test_on_close_runs_even_when_the_body_never_started() -> None:
    """Closing a generator that never started skips its `finally`: what the route opened
    before returning the response (a subscription) is closed by `on_close` instead."""
    quota = StreamQuota(1)
    closed: list[str] = []

    async def close_subscription() -> None:
        closed.append("subscription")

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise OSError("connection reset by peer")

    body = Body()
    response = SlotStreamingResponse(
        body.events(), quota.acquire(7, "hash"), on_close=close_subscription
    )
    with pytest.raises(ClientDisconnect):
        await response(scope("2.4"), receive, send)
    assert not body.started and not body.closed  # its own finally never ran
    assert closed == ["subscription"] and quota.open_streams(7) == 0

    async def short() -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"

    async def ok(message: Message) -> None:
        return None

    finished = SlotStreamingResponse(short(), quota.acquire(7, "hash"), on_close=close_subscription)
    await finished(scope("2.4"), receive, ok)
    assert closed == ["subscription", "subscription"]
