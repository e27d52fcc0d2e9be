"""A continuous task's notifications over WebSocket and Server-Sent Events.

`WS /core/local-query-tasks/{id}/stream` and `GET /core/local-query-tasks/{id}/events`
carry the same JSON messages (see `fleetwatch.query.notifications`): the initial results,
then one message per change, each with its `seq`. `?since=N` (SSE also `Last-Event-ID`)
skips the initial results and sends every change after N. An SSE event's `id:` is its seq
(set on the last initial message and on every change), so a reconnecting EventSource
resumes by itself; comment lines keep idle connections alive. A subscriber that falls
behind gets `{"type": "resync", "seq": N}` and the connection ends. A team user may stream
only their own tasks, whose scope keeps other teams' hosts out (see `query_tasks.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from starlette.responses import StreamingResponse

from fleetwatch.api.auth import StreamUser, bearer_token, resolve_token
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.api.query_tasks import owner_filter
from fleetwatch.api.sse import KEEPALIVE, sse_event, with_keepalive
from fleetwatch.fleet.users import User
from fleetwatch.query.subscriptions import (
    Closed,
    Initial,
    Message,
    ResumeTooOld,
    Resync,
    Subscription,
    SubscriptionError,
)
from fleetwatch.query.tasks import FACTORIES, TaskError
from fleetwatch.services import Services

router = APIRouter(tags=["query tasks"])

#: A WebSocket send that takes longer than this (the client stopped reading) ends the stream.
SEND_TIMEOUT = 30.0
#: How long a WebSocket client has to send `{"type": "auth", ...}` without a token.
AUTH_TIMEOUT = 10.0


def parse_since(raw: str | None, what: str) -> int | None:
    """A resume sequence from `?since=` or `Last-Event-ID`; 400 if it is not one."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, f"{what}: expected a sequence number (a non-negative integer)")
    return int(raw)


async def open_subscription(
    services: Services, user: User, link: str, since: int | None
) -> Subscription:
    """Subscribe to a task's stream; the ApiError says why not. A team user may stream only
    their own tasks (another's answers 404), whose scope keeps other teams' hosts out."""
    try:
        services.query_tasks.get(link, owner_filter(user))
        return await services.query_tasks.subscribe(link, since)
    except TaskError as exc:
        raise ApiError(exc.status, exc.message) from None
    except ResumeTooOld as exc:
        raise ApiError(410, str(exc), first_retained_seq=exc.first) from None
    except SubscriptionError as exc:
        raise ApiError(409, str(exc)) from None


def _event_id(message: Message) -> int | None:
    if isinstance(message, Initial) and not message.last:
        return None  # a reconnect mid-way through the initial results must start over
    return message.seq


def _register(base: str) -> None:
    async def task_events(
        task_id: str, request: Request, user: StreamUser, services: ServicesDep
    ) -> StreamingResponse:
        """Server-Sent Events: the task's notifications, resumable with Last-Event-ID."""
        link = f"{base}/{task_id}"
        since = parse_since(request.query_params.get("since"), "since")
        if since is None:
            since = parse_since(request.headers.get("last-event-id"), "Last-Event-ID")
        sub = await open_subscription(services, user, link, since)
        keepalive = services.settings.sse_keepalive
        return StreamingResponse(
            _sse_body(services, link, sub, keepalive),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def task_stream(websocket: WebSocket, task_id: str) -> None:
        """WebSocket: the task's notifications; `?since=N` resumes after N."""
        services: Services = websocket.app.state.services
        await websocket.accept()
        try:
            user = await _authenticate(websocket, services)
            since = parse_since(websocket.query_params.get("since"), "since")
            sub = await open_subscription(services, user, f"{base}/{task_id}", since)
        except ApiError as exc:
            await _send_error(websocket, exc)
            return
        await _pump_websocket(websocket, services, f"{base}/{task_id}", sub)

    router.add_api_route(f"{base}/{{task_id}}/events", task_events, methods=["GET"])
    router.add_api_websocket_route(f"{base}/{{task_id}}/stream", task_stream)


async def _sse_body(
    services: Services, link: str, sub: Subscription, keepalive: float
) -> AsyncIterator[bytes]:
    try:
        yield b": fleetwatch query task stream\n\n"
        async for message in with_keepalive(sub, keepalive):
            if message is None:
                yield KEEPALIVE
                continue
            data = orjson.dumps(services.query_tasks.format(link, message))
            yield sse_event(data, _event_id(message))
            if isinstance(message, Resync | Closed):
                return
    finally:
        await sub.aclose()


async def _authenticate(websocket: WebSocket, services: Services) -> User:
    token = bearer_token(websocket, allow_query=True)
    if token is None:
        # Browsers cannot set headers on a WebSocket: accept a first auth message.
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT)
            first = orjson.loads(raw)
        except (TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect):
            first = None
        if isinstance(first, dict) and first.get("type") == "auth":
            data = first.get("data")
            if isinstance(data, dict) and isinstance(data.get("token"), str):
                token = data["token"]
    return await resolve_token(services, token)


async def _send_error(websocket: WebSocket, exc: ApiError) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(orjson.dumps({"type": "error", **exc.body()}).decode())
        await websocket.close(code=1008 if exc.status in (401, 403) else 1000)


async def _send_all(
    websocket: WebSocket, services: Services, link: str, messages: list[Message]
) -> None:
    for message in messages:
        await websocket.send_text(orjson.dumps(services.query_tasks.format(link, message)).decode())


async def _pump_websocket(
    websocket: WebSocket, services: Services, link: str, sub: Subscription
) -> None:
    """Send the subscription's messages until it ends or the client goes away."""

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
            await asyncio.wait({pending, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not pending.done():
                return  # the client went away while the stream was idle
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
