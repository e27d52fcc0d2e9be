"""Server-Sent Events plumbing shared by the campaign and query task streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from fleetwatch.fleet.stream_quota import StreamSlot

T = TypeVar("T")

KEEPALIVE = b": keep-alive\n\n"


class SlotStreamingResponse(StreamingResponse):
    """An event stream holding one of its user's stream slots (`max_streams_per_user`).

    The slot is given back when the response ends, by whatever path: the body finished,
    the client went away (Starlette cancels the body's task, possibly while the body
    generator waits at a `yield` for a full socket, where its own `finally` does not run),
    the request was cancelled, or the body never started (the client left first). The body
    is closed at that moment too, so its `finally` (unsubscribing) runs now rather than when
    the garbage collector finds the generator; until then a dropped client's slot would
    count against its user, and enough drops would lock the user out of streaming.

    Closing a generator that never started does not run its `finally`: whatever a route
    opened before returning the response (a subscription) is given as `on_close`, which is
    awaited here whatever happened to the body.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        slot: StreamSlot,
        headers: Mapping[str, str] | None = None,
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.slot = slot
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                # RuntimeError: the generator is still running (never here: its task ended)
                with contextlib.suppress(Exception):
                    await close()
            if self.on_close is not None:
                await self.on_close()


def sse_event(data: bytes, seq: int | None, event: str | None = None) -> bytes:
    """One event: `id:` (the resume cursor) when given, an optional name, the JSON data."""
    head = b"" if seq is None else b"id: %d\n" % seq
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


async def with_keepalive(
    source: AsyncIterator[T], keepalive: float, stop: asyncio.Future[Any] | None = None
) -> AsyncIterator[T | None]:
    """The items of `source`, and None whenever `keepalive` seconds pass without one; ends
    as soon as `stop` (if given: e.g. the stream's token was revoked) is done.

    The pending read survives a keep-alive (it is not cancelled, so no item is lost) and is
    cancelled when the caller stops iterating.
    """
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(source.__anext__())
            waiting: set[asyncio.Future[Any]] = {pending} if stop is None else {pending, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if stop is not None and stop.done():
                return
            if not done:
                yield None
                continue
            finished, pending = pending, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
