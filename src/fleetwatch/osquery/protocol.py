"""Agents' POSTs served in the HTTP protocol itself, without a request-response cycle.

Most of a fleet server's requests are agents' POSTs, and by profile most of what one costs
is HTTP: uvicorn's request-response cycle (an `asyncio.Event`, ASGI message dicts for the
body and the response, header validation), the proxy-headers middleware and the ASGI task
that drives them. `AgentProtocol` keeps httptools as the parser and uvicorn's protocol for
everything else, but when a request's headers complete and it is a POST to an agent path
(the routes of `LeanAgentApp`), it takes the request itself: the body is read in the
protocol as it arrives (`BodyReader`: the same size limits, gzip and deflate handling and
errors as the ASGI reader), the request is shed at once if admission control says so, the
handler runs in a task once the body is complete (through the same `LeanAgentApp.answer`:
lane, handlers, exception handlers), and the response (status line, uvicorn's default
headers, Content-Length, X-Request-ID) goes out in one write, followed by the same access
log line and request metrics (`record_request`).

What uvicorn's cycle does and this keeps: keep-alive and `Connection: close` (HTTP/1.0
closes), pipelined requests answered in order (agent and other requests share uvicorn's
pipeline queue, reading paused meanwhile), `Expect: 100-continue` answered when the body
is wanted, a write waiting while the transport's buffer is full, graceful shutdown (the
tasks are uvicorn's server tasks; a shutdown closes the connection after the answer), the
client's address as the proxy-headers middleware sets it, and `DISCONNECT` (a client gone
mid-hold releases its held read at once). Every other request (other paths and methods,
upgrades, or when uvicorn limits concurrency) goes through uvicorn's own path unchanged.

The uvicorn internals used beyond `OneWriteProtocol`'s are the protocol's per-request state
(`parser`, `url`, `scope`, `headers`, `expect_100_continue`, `cycle`, `pipeline`, `flow`),
its `on_response_complete`, `STATUS_LINE` and the proxy-headers middleware's trusted hosts;
`agent_protocol_problem` checks them (and `fleetwatch serve` stops if one is gone).
"""

from __future__ import annotations

import contextvars
import logging
import time
import urllib.parse
from typing import Any

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from fleetwatch.http_protocol import (
    DISCONNECT,
    TESTED_UVICORN,
    OneWriteProtocol,
    checked_protocol,
)
from fleetwatch.ops.logs import REQUEST, RequestContext
from fleetwatch.ops.middleware import record_request
from fleetwatch.osquery.body import BodyError, BodyReader
from fleetwatch.osquery.call import AgentRequest
from fleetwatch.osquery.lean_app import Answer, FleetwatchApp, LeanAgentApp, sized

server_log = logging.getLogger("uvicorn.error")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: What uvicorn answers when the app raises without a response (the app has a catch-all).
_INTERNAL = (
    [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
    b"Internal Server Error",
)


class _NoEvent:
    """Stands for a cycle's `message_event`, which uvicorn's protocol sets on a lost
    connection: a call waits for no event."""

    __slots__ = ()

    def set(self) -> None:
        """Nothing waits on it."""


_NO_EVENT = _NoEvent()


class AgentCall:
    """One agent request served by `AgentProtocol`; stands as the protocol's `cycle`."""

    __slots__ = (
        "lean",
        "route",
        "scope",
        "keep_alive",
        "expect_100",
        "reader",
        "body",
        "started",
        "ticket",
        "running",
        "response_complete",
        "disconnected",
        "gone",
        "start",
        "request_id",
        "context",
        "message_event",
    )

    def __init__(
        self,
        lean: LeanAgentApp,
        path: str,
        scope: dict[str, Any],
        keep_alive: bool,
        expect_100: bool,
    ) -> None:
        self.lean = lean
        self.route = lean.routes[path]
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        #: The body as it arrives; then `body`: the whole body, or why it cannot be used.
        self.reader: BodyReader | None = None
        self.body: bytes | BodyError | None = None
        try:
            self.reader = BodyReader(scope["headers"], lean.services.settings.max_body_bytes)
        except BodyError as exc:
            self.body = exc
        #: Its turn came (the requests before it on the connection were answered).
        self.started = False
        #: Its enroll ticket (admission control counts enrolls from their arrival).
        self.ticket: int | None = None
        #: Its handler's task was started.
        self.running = False
        self.response_complete = False
        self.disconnected = False
        self.gone: Any = None
        self.start = 0.0
        self.request_id = ""
        #: What its log lines share (the handler binds the agent's host to it): made at its
        #: turn, used by the handler's lines and the access line alike.
        self.context: RequestContext | None = None
        self.message_event = _NO_EVENT

    def when_gone(self, callback: Any) -> None:
        """The `DISCONNECT` extension: call `callback` if the client goes away first."""
        self.gone = callback

    async def receive(self) -> dict[str, Any]:
        """The ASGI receive channel an exception handler's `Request` gets: the body read."""
        body = self.body
        if isinstance(body, bytes) and not self.response_complete:
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}


class AgentProtocol(OneWriteProtocol):
    """`OneWriteProtocol` serving agents' POSTs itself (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fleet_app, self.trusted = _fleet_app(self.app)
        #: The agent call whose turn it is, until answered (it may not be `cycle` when
        #: requests are pipelined behind it).
        self.serving: AgentCall | None = None

    def on_headers_complete(self) -> None:
        app = self.fleet_app
        lean = app.lean if app is not None else None
        parser = self.parser
        if (
            lean is None
            or parser.get_method() != b"POST"
            or parser.should_upgrade()
            or self.limit_concurrency is not None
        ):
            super().on_headers_complete()
            return
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        full_path = self.root_path + path
        if full_path not in lean.routes:
            super().on_headers_complete()
            return
        # The scope as uvicorn's on_headers_complete and the proxy-headers middleware make it.
        scope: Any = self.scope
        http_version = parser.get_http_version()
        scope["method"] = "POST"
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = full_path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed.query or b""
        if self.trusted is not None:
            _forwarded(self.trusted, scope)
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        call = AgentCall(lean, full_path, scope, keep_alive, self.expect_100_continue)
        scope["extensions"] = {DISCONNECT: call.when_gone}
        existing = self.cycle
        self.cycle = call  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start_call(call)
        else:
            # Pipelined behind a request not yet answered: its turn comes in order.
            self.flow.pause_reading()
            self.pipeline.appendleft((call, None))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if isinstance(cycle, AgentCall):  # a pipelined agent request whose turn came
            self._start_call(cycle)
            return
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        call: Any = self.cycle
        if type(call) is not AgentCall:
            super().on_body(body)
            return
        reader = call.reader
        if reader is None or call.response_complete:
            return  # the body was refused already (or the request was answered): skipped
        try:
            reader.feed(body)
        except BodyError as exc:
            # Answered as soon as its turn comes, the rest of the body skipped (as before).
            call.body, call.reader = exc, None
            if call.started:
                self._run(call)

    def on_message_complete(self) -> None:
        call: Any = self.cycle
        if type(call) is not AgentCall:
            super().on_message_complete()
            return
        reader = call.reader
        if reader is None or call.response_complete:
            return
        call.reader = None
        try:
            call.body = reader.finish()
        except BodyError as exc:
            call.body = exc
        if call.started:
            self._run(call)

    def _start_call(self, call: AgentCall) -> None:
        # Its turn: shed at once (body unread) or served once its body is complete.
        lean = call.lean
        call.start = time.perf_counter()
        call.request_id = lean.request_id(call.scope)
        call.context = RequestContext(call.request_id)
        self.serving = call
        shed = lean.shed(call.route)
        if shed is not None:
            if self.flow.write_paused:
                self._spawn(self._answer_later(call, sized(shed)))
            else:
                self._finish(call, sized(shed))
            return
        call.started = True
        call.ticket = lean.admitted(call.route)
        if call.body is not None:
            self._run(call)
        elif call.expect_100 and not self.transport.is_closing():
            self.transport.write(_CONTINUE)

    def _run(self, call: AgentCall) -> None:
        call.running = True
        self._spawn(self._serve(call))

    def _spawn(self, coroutine: Any) -> None:
        if getattr(self.config, "reset_contextvars", False):
            task = self.loop.create_task(coroutine, context=contextvars.Context())
        else:
            task = self.loop.create_task(coroutine)
        # Among uvicorn's server tasks: a graceful shutdown waits for them.
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _serve(self, call: AgentCall) -> None:
        token = REQUEST.set(call.context)
        try:
            lean = call.lean
            request = AgentRequest(call.scope, call.receive, lean.services, call.body)
            try:
                answer = await lean.answer(call.route, request, call.ticket)
            except Exception as exc:  # not handled by the app (it has a catch-all)
                server_log.error("Exception in ASGI application\n", exc_info=exc)
                headers, body = _INTERNAL
                answer = Answer(500, list(headers), body)
                call.keep_alive = False
            await self._answer_later(call, answer)
        except BaseException:
            if not call.response_complete:  # cancelled (server shutdown): counted as before
                self._record(call, 500, time.perf_counter())
            raise
        finally:
            REQUEST.reset(token)

    async def _answer_later(self, call: AgentCall, answer: Answer) -> None:
        # As uvicorn's cycle: a response waits while the transport's buffer is full.
        if self.flow.write_paused and not call.disconnected:
            await self.flow.drain()
        self._finish(call, answer)

    def _finish(self, call: AgentCall, answer: Answer) -> None:
        """Write the answer in one write; log, count, and let the next request's turn come."""
        end = time.perf_counter()
        call.response_complete = True
        if self.serving is call:
            self.serving = None
        # The call and its scope refer to each other through the DISCONNECT extension:
        # undone, so that reference counting frees them now rather than the collector later.
        call.gone = None
        call.scope.pop("extensions", None)
        transport = self.transport
        if not call.disconnected and not transport.is_closing():
            parts = [httptools_impl.STATUS_LINE[answer.status]]
            for name, value in (*self.server_state.default_headers, *answer.headers):
                parts += (name, b": ", value, b"\r\n")
            parts += (b"x-request-id: ", call.request_id.encode(), b"\r\n")
            if not call.keep_alive:
                parts.append(b"connection: close\r\n")
            parts += (b"\r\n", answer.body)
            transport.write(b"".join(parts))
            if not call.keep_alive:
                transport.close()
        self._record(call, answer.status, end)
        self.on_response_complete()
        if answer.unhandled is not None:
            # As uvicorn does for an app that raises after its response: logged, closed.
            server_log.error("Exception in ASGI application\n", exc_info=answer.unhandled)
            transport.close()

    def _record(self, call: AgentCall, status: int, end: float) -> None:
        # The call's own context: the access line carries the host the handler bound.
        token = REQUEST.set(call.context)
        try:
            record_request(call.lean.metrics, call.scope, call.route.path, status, end - call.start)
        finally:
            REQUEST.reset(token)

    def connection_lost(self, exc: Exception | None) -> None:
        calls = {id(c): c for c in (self.cycle, self.serving) if type(c) is AgentCall}
        super().connection_lost(exc)
        for call in calls.values():
            if call.response_complete:
                continue
            call.disconnected = True
            gone, call.gone = call.gone, None
            if gone is not None:
                gone()
            if call.started and not call.running:
                # Gone mid-body: counted as the ASGI path counts it (its body read failed).
                call.response_complete = True
                if call.ticket is not None:
                    call.lean.admission.enroll_ended(call.ticket)
                self._record(call, 500, time.perf_counter())


def _fleet_app(app: Any) -> tuple[FleetwatchApp | None, Any]:
    """The FleetwatchApp uvicorn serves and the proxy-headers middleware's trusted hosts
    (None if not trusted), or (None, None) if anything else wraps the app (then every
    request goes through uvicorn's path)."""
    trusted = None
    while True:
        if isinstance(app, FleetwatchApp):
            return app, trusted
        if isinstance(app, ProxyHeadersMiddleware):
            trusted, app = app.trusted_hosts, app.app
            continue
        return None, None


def _forwarded(trusted: Any, scope: dict[str, Any]) -> None:
    """uvicorn's ProxyHeadersMiddleware, for an HTTP request's scope."""
    client = scope.get("client")
    if (client[0] if client else None) not in trusted:
        return
    proto: bytes | None = None
    forwarded_for: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
    if proto is not None:
        scheme = proto.decode("latin1").strip()
        if scheme in {"http", "https", "ws", "wss"}:
            scope["scheme"] = scheme
    if forwarded_for:
        host, port = trusted.get_trusted_client_address(b", ".join(forwarded_for).decode("latin1"))
        if host:
            scope["client"] = (host, port)


#: The protocol's per-request state used here: (method that sets it, names).
_STATE = (
    ("__init__", ("parser", "pipeline", "expect_100_continue", "cycle", "tasks")),
    ("connection_made", ("flow", "transport")),
    ("on_message_begin", ("url", "headers", "scope")),
    ("on_response_complete", ("pipeline", "_start_asgi_task")),
)


def agent_protocol_problem(protocol: type[Any] = httptools_impl.HttpToolsProtocol) -> str | None:
    """What this uvicorn lacks of the internals `AgentProtocol` uses beyond
    `OneWriteProtocol`'s, or None."""
    if not isinstance(getattr(httptools_impl, "STATUS_LINE", None), dict):
        return "httptools_impl.STATUS_LINE is gone"
    trusted = getattr(ProxyHeadersMiddleware(None), "trusted_hosts", None)  # type: ignore[arg-type]
    if not hasattr(trusted, "get_trusted_client_address"):
        return "ProxyHeadersMiddleware.trusted_hosts no longer resolves X-Forwarded-For"
    for method, names in _STATE:
        code = getattr(getattr(protocol, method, None), "__code__", None)
        used = set(code.co_names) if code is not None else set()
        missing = [name for name in names if name not in used]
        if missing:
            return f"HttpToolsProtocol.{method} no longer uses {', '.join(missing)}"
    return None


def checked_agent_protocol() -> type[AgentProtocol]:
    """`AgentProtocol`, after checking that this uvicorn still has what it needs
    (`checked_protocol`'s checks and `agent_protocol_problem`); RuntimeError otherwise."""
    checked_protocol()
    problem = agent_protocol_problem()
    if problem is not None:
        raise RuntimeError(
            f"fleetwatch's agent HTTP protocol uses uvicorn internals that changed ({problem}); "
            f"install uvicorn{TESTED_UVICORN}, the tested range"
        )
    return AgentProtocol
