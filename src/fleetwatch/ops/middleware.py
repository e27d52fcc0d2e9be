"""The request middleware: a request id, latency and agent outcome metrics, the access log.

A plain ASGI middleware (no BaseHTTPMiddleware task hop): per request it reads or makes a
request id, sets the logging context, adds `X-Request-ID` to the response, observes the time
to the response headers by route template, counts agent requests by endpoint and outcome,
and writes one access log line. Agents' successful requests are logged at debug level (a
fleet checks in constantly); everything else at info.

It also refuses, with a 400 naming the problem, user-API input no database can store: NUL
characters (PostgreSQL keeps none in text or jsonb) and unpaired UTF-16 surrogates (not
encodable as UTF-8), in the path, the query string or a JSON body. (Agent bodies are read
by the agent API itself, which must never refuse a log batch; see osquery/body.py.)
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetwatch.ops.logs import REQUEST, RequestContext
from fleetwatch.ops.metrics import AGENT_ENDPOINTS, Metrics

access_log = logging.getLogger("fleetwatch.access")

#: Path parameters whose values are secrets: the access log shows `***` instead.
SECRET_PARAMS = frozenset({"secret", "token", "node_key"})
#: Route label of requests that matched no route (one label, not one per path).
UNMATCHED = "unmatched"


def _request_ids() -> itertools.count[int]:
    return itertools.count(1)


class RequestMiddleware:
    """Wraps the app; see the module docstring."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int = 10 << 20) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # A per-process prefix and a counter: unique enough, and far cheaper than uuid4.
        self._prefix = os.urandom(4).hex()
        self._ids = _request_ids()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = incoming_request_id(scope)
        if request_id is None:
            request_id = f"{self._prefix}-{next(self._ids)}"
        ctx = RequestContext(request_id)
        token = REQUEST.set(ctx)
        status = 500
        headers_at: float | None = None
        raw_id = request_id.encode()

        async def send_with_id(message: Message) -> None:
            nonlocal status, headers_at
            if message["type"] == "http.response.start":
                status = message["status"]
                headers_at = time.perf_counter()
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", raw_id)]
            await send(message)

        try:
            if scope["path"] not in AGENT_ENDPOINTS:
                receive, problem = await self._screen(scope, receive)
                if problem is not None:
                    await _refuse(send_with_id, *problem)
                    return
            await self.app(scope, receive, send_with_id)
        except Exception:
            access_log.exception("unhandled error in %s %s", scope["method"], _route(scope))
            raise
        finally:
            end = headers_at if headers_at is not None else time.perf_counter()
            self._finish(scope, ctx, status, end - start)
            REQUEST.reset(token)

    async def _screen(
        self, scope: Scope, receive: Receive
    ) -> tuple[Receive, tuple[int, str] | None]:
        """Check path, query and a JSON body for unstorable characters (see the module doc).

        The body is read here (bounded) and replayed to the app.
        """
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            return receive, (400, "the URL contains a NUL character (%00); remove it")
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive, None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks = []
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return receive, (413, f"request body too large: over {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = unstorable(body)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, (None if problem is None else (400, problem))

    def _finish(self, scope: Scope, ctx: RequestContext, status: int, seconds: float) -> None:
        record_request(self.metrics, scope, _route(scope), status, seconds)


def record_request(metrics: Metrics, scope: Scope, route: str, status: int, seconds: float) -> None:
    """A finished request's metrics and access log line (the request's context still set)."""
    method: str = scope["method"]
    metrics.observe_request(route, method, seconds)
    endpoint = AGENT_ENDPOINTS.get(scope["path"])
    if endpoint is not None:
        metrics.count_agent_request(endpoint, status)
    level = logging.DEBUG if endpoint is not None and status < 400 else logging.INFO
    if access_log.isEnabledFor(level):
        access_log.log(
            level,
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "path": _loggable_path(scope),
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": _client(scope),
            },
        )


def incoming_request_id(scope: Scope) -> str | None:
    """The caller's X-Request-ID when it is short and plain enough to keep, else None."""
    request_id = _header(scope, b"x-request-id")
    return request_id if request_id is not None and _acceptable_id(request_id) else None


# An escape preceded by an even number of backslashes (an odd one escapes the backslash).
_ESCAPE = rb"(?<!\\)(?:\\\\)*\\u"
_NUL = re.compile(_ESCAPE + rb"0000")
_LONE_HIGH = re.compile(_ESCAPE + rb"[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_LONE_LOW = re.compile(
    rb"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})" + _ESCAPE + rb"[dD][c-fC-F][0-9a-fA-F]{2}"
)


def unstorable(body: bytes) -> str | None:
    """Why a JSON body cannot be stored (NUL or an unpaired surrogate escape), or None."""
    if b"\\u" not in body:
        return None
    if _NUL.search(body):
        return "the body contains a NUL character (\\u0000), which cannot be stored; remove it"
    if _LONE_HIGH.search(body) or _LONE_LOW.search(body):
        return (
            "the body contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), "
            "which is not text; send valid Unicode"
        )
    return None


async def _refuse(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _acceptable_id(value: str) -> bool:
    # A caller's id is kept only if it is short and plain: it goes into every log line.
    return 0 < len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def _loggable_path(scope: Scope) -> str:
    """The request path with secret path parameters masked (no query string)."""
    path: str = scope["path"]
    params: dict[str, Any] = scope.get("path_params") or {}
    for name in SECRET_PARAMS & params.keys():
        value = str(params[name])
        if value:
            path = path.replace(value, "***")
    return path


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
