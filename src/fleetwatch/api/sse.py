"""Server-Sent Events plumbing shared by the campaign and query task streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")

KEEPALIVE = b": keep-alive\n\n"


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
