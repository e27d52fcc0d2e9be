"""A continuous task's notifications over WebSocket and Server-Sent Events.

`WS /core/local-query-tasks/{id}/stream` and `GET /core/local-query-tasks/{id}/events`
carry the same JSON messages (see `fleetwatch.query.notifications`): the initial results,
then one message per change, each with its `seq`. `?since=N` (SSE also `Last-Event-ID`)
skips the initial results and sends every change after N. An SSE event's `id:` is its seq
(on every initial message, whose documents come in the order of their last write, and on
every change), so a reconnecting EventSource resumes by itself; `{"type": "current"}` says
the client is caught up (after the initial results, after a resume's replay); comment lines
keep idle connections alive. A subscriber that falls behind gets `{"type": "resync",
"seq": N}` and the connection ends. A user streams only their own tasks (a global admin any
task), whose scope keeps out what the user may not see (see `query_tasks.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect

from fleetwatch.api.auth import StreamUser, close_websocket, stream_token_hash, websocket_user
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.api.query_tasks import owner_filter
from fleetwatch.api.sse import KEEPALIVE, SlotStreamingResponse, sse_event, with_keepalive
from fleetwatch.fleet.errors import TooMany
from fleetwatch.fleet.stream_quota import StreamSlot
from fleetwatch.fleet.users import User
from fleetwatch.query.stream_messages import (
    Closed,
    Initial,
    Message,
    ResumeTooOld,
    Resync,
    SubscriptionError,
)
from fleetwatch.query.subscription import Subscription
from fleetwatch.query.task_requests import FACTORIES, TaskError
from fleetwatch.services import Services

router = APIRouter(tags=["query tasks"])

#: A WebSocket send that takes longer than this (the client stopped reading) ends the stream.
SEND_TIMEOUT = 30.0


def parse_since(raw: str | None, what: str) -> int | None:
    """A resume sequence from `?since=` or `Last-Event-ID`; 400 if it is not one."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, f"{what}: expected a sequence number (a non-negative integer)")
    return int(raw)


async def open_subscription(
    services: Services, user: User, link: str, since: int | None, token_hash: str
) -> tuple[Subscription, StreamSlot]:
    """Subscribe to a task's stream; the ApiError says why not. A user may stream only their
    own tasks (another's answers 404; a global admin streams any), whose scope keeps out what
    the user may not see. The stream holds one of the user's slots (429 when none is left)
    until the caller releases it; the slot ends when the token `token_hash` is revoked."""
    try:
        services.query_tasks.get(link, owner_filter(user))
        slot = services.stream_quota.acquire(user.id, token_hash)
    except TaskError as exc:
        raise ApiError(exc.status, exc.message) from None
    except TooMany as exc:
        raise ApiError(429, str(exc)) from None
    try:
        return await _subscribe(services, link, since), slot
    except BaseException:
        slot.release()
        raise


async def _subscribe(services: Services, link: str, since: int | None) -> Subscription:
    try:
        return await services.query_tasks.subscribe(link, since)
    except TaskError as exc:
        raise ApiError(exc.status, exc.message) from None
    except ResumeTooOld as exc:
        raise ApiError(410, str(exc), first_retained_seq=exc.first) from None
    except SubscriptionError as exc:
        raise ApiError(409, str(exc)) from None


def _event_id(message: Message) -> int | None:
    if isinstance(message, Initial):
        return message.cursor  # in write order: resuming mid-way loses nothing
    return message.seq


def _register(base: str) -> None:
    async def task_events(
        task_id: str, request: Request, user: StreamUser, services: ServicesDep
    ) -> SlotStreamingResponse:
        """Server-Sent Events: the task's notifications, resumable with Last-Event-ID."""
        link = f"{base}/{task_id}"
        since = parse_since(request.query_params.get("since"), "since")
        if since is None:
            since = parse_since(request.headers.get("last-event-id"), "Last-Event-ID")
        sub, slot = await open_subscription(services, user, link, since, stream_token_hash(request))
        keepalive = services.settings.sse_keepalive
        # the slot is given back and the subscription closed when the response ends by any
        # path, the body never started included (SlotStreamingResponse, on_close)
        return SlotStreamingResponse(
            _sse_body(services, link, sub, keepalive, slot),
            slot,
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            on_close=sub.aclose,
        )

    async def task_stream(websocket: WebSocket, task_id: str) -> None:
        """WebSocket: the task's notifications; `?since=N` resumes after N."""
        services: Services = websocket.app.state.services
        await websocket.accept()
        try:
            user = await websocket_user(websocket, services)
            since = parse_since(websocket.query_params.get("since"), "since")
            sub, slot = await open_subscription(
                services, user, f"{base}/{task_id}", since, stream_token_hash(websocket)
            )
        except ApiError as exc:
            await close_websocket(websocket, exc)
            return
        try:
            await _pump_websocket(websocket, services, f"{base}/{task_id}", sub, slot.ended)
            if slot.ended_reason is not None:  # its token was revoked: 4401 and why
                await close_websocket(websocket, ApiError(401, slot.ended_message))
        finally:
            slot.release()

    router.add_api_route(f"{base}/{{task_id}}/events", task_events, methods=["GET"])
    router.add_api_websocket_route(f"{base}/{{task_id}}/stream", task_stream)


async def _sse_body(
    services: Services, link: str, sub: Subscription, keepalive: float, slot: StreamSlot
) -> AsyncIterator[bytes]:
    try:
        yield b": fleetwatch query task stream\n\n"
        async for message in with_keepalive(sub, keepalive, slot.ended):
            if message is None:
                yield KEEPALIVE
                continue
            data = orjson.dumps(services.query_tasks.format(link, message))
            yield sse_event(data, _event_id(message))
            if isinstance(message, Resync | Closed):
                return
        if slot.ended_reason is not None:  # its token was revoked
            yield sse_event(orjson.dumps({"type": "error", "error": slot.ended_message}), None)
    finally:
        slot.release()
        await sub.aclose()


async def _send_all(
    websocket: WebSocket, services: Services, link: str, messages: list[Message]
) -> None:
    for message in messages:
        await websocket.send_text(orjson.dumps(services.query_tasks.format(link, message)).decode())


async def _pump_websocket(
    websocket: WebSocket,
    services: Services,
    link: str,
    sub: Subscription,
    stop: asyncio.Future[Any],
) -> None:
    """Send the subscription's messages until it ends, the client goes away or `stop` is
    done (the stream's token was revoked: the caller closes the socket)."""

    async def drain_incoming() -> None:
        # Reading lets us notice a client that closed; incoming messages are ignored.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    reader = asyncio.create_task(drain_incoming())
    pending: asyncio.Future[Message] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(sub.__anext__())
            await asyncio.wait({pending, reader, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not pending.done() or stop.done():
                return  # the client went away while the stream was idle, or must stop
            try:
                messages = [pending.result()]
            except StopAsyncIteration:
                break
            finally:
                pending = None
            # Whatever else is ready goes out in the same step (fewer wake-ups under load).
            messages.extend(sub.ready())
            send = asyncio.ensure_future(_send_all(websocket, services, link, messages))
            done, _ = await asyncio.wait(
                {send, reader}, timeout=SEND_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if send not in done:
                send.cancel()
                return  # the client went away, or stopped reading: drop it
            send.result()
            if isinstance(messages[-1], Resync | Closed):
                break
        with contextlib.suppress(Exception):
            await websocket.close()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        if pending is not None:
            pending.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await sub.aclose()


for _base in FACTORIES.values():
    _register(_base)
