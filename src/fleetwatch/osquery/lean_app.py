"""The lean path: agents' POSTs answered straight from ASGI, before FastAPI.

Agent requests are most of a server's traffic (every host checks in every few seconds, and
a campaign makes every host read and write at once). By profile, FastAPI's and Starlette's
layers and the request middleware cost them more than the endpoints themselves. So
`FleetwatchApp` hands a POST to an agent path (`/api/v1/osquery/*` and Fleet's unversioned
`/api/osquery/*`) to `LeanAgentApp` before its middleware stack and router: no `Request`,
no `Response`, no routing, one `http.response.start` and one `http.response.body` with its
Content-Length. Everything an agent or an operator sees stays as it was: the same handlers
(osquery/routes.py) and replies, the request id (`X-Request-ID` and in every log line), the
access log line and the request metrics (`record_request`, shared with the middleware), and
the app's exception handlers for anything a handler raises. Agent requests pass through an
`AgentLane` (osquery/lane.py) so that user requests keep their turns, after `Admission`
(osquery/admission.py) has shed what would not be answered before osquery gives up. Other
methods on these paths (405) and every other path go through FastAPI as before.

Under `fleetwatch serve` the same requests do not even reach ASGI: the HTTP protocol
(osquery/protocol.py) reads their bodies and runs `shed`, `admitted` and `answer` itself and
writes the response; `serve` is the path under any other server (tests, other protocols).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from itertools import count

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fleetwatch.ops.logs import REQUEST, RequestContext
from fleetwatch.ops.metrics import AGENT_ENDPOINTS, AdmissionGauges
from fleetwatch.ops.middleware import incoming_request_id, record_request
from fleetwatch.osquery.admission import Admission
from fleetwatch.osquery.call import AgentRequest, Reply
from fleetwatch.osquery.lane import AgentLane
from fleetwatch.osquery.routes import HANDLERS, PREFIXES, Handler
from fleetwatch.services import Services

access_log = logging.getLogger("fleetwatch.access")

_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class AgentRoute:
    """One agent endpoint path: its handler and its route label (the path itself)."""

    path: str
    handler: Handler
    #: An enroll (counted in progress by admission control).
    enroll: bool = False


class LeanAgentApp:
    """Serves the agent endpoints' POSTs (see the module docstring)."""

    def __init__(self, app: FastAPI, services: Services) -> None:
        self.app = app
        self.services = services
        self.metrics = services.ops.metrics
        #: Full path -> route, for both prefixes.
        self.routes: dict[str, AgentRoute] = {
            prefix + path: AgentRoute(prefix + path, handler, path == "/enroll")
            for prefix in PREFIXES
            for path, handler in HANDLERS.items()
        }
        assert self.routes.keys() == AGENT_ENDPOINTS.keys()
        self.lane = AgentLane()
        settings = services.settings
        self.admission = Admission(
            self.lane,
            queue_limit=settings.agent_queue_limit,
            enroll_backlog=settings.enroll_backlog,
            max_wait=settings.agent_queue_wait,
        )
        self.metrics.registry.register(AdmissionGauges(self.admission))
        # Request ids as the request middleware makes them: a per-process prefix, a counter.
        self._prefix = os.urandom(4).hex()
        self._ids = count(1)

    def request_id(self, scope: Scope) -> str:
        """The request's id: the caller's X-Request-ID if acceptable, else a new one."""
        request_id = incoming_request_id(scope)
        if request_id is None:
            request_id = f"{self._prefix}-{next(self._ids)}"
        return request_id

    def shed(self, route: AgentRoute) -> Reply | None:
        """The answer to a request shed as it arrives (see osquery/admission.py), or None
        to serve it; counted by endpoint and reason."""
        shed = self.admission.refusal(route.enroll)
        if shed is None:
            return None
        self.metrics.agent_shed.add((AGENT_ENDPOINTS[route.path], shed))
        return self.admission.shed_reply(route.enroll)

    def admitted(self, route: AgentRoute) -> int | None:
        """A request not shed: an enroll is counted in progress from here (its body still
        to read); its ticket, for `answer` (or `enroll_ended`)."""
        return self.admission.enroll_started() if route.enroll else None

    async def answer(self, route: AgentRoute, request: AgentRequest, ticket: int | None) -> Answer:
        """Run the request's handler through the lane; the response to send, and an error
        to raise once it is sent (see `_handled`). Ends the enroll `ticket`."""
        try:
            try:
                # Through the lane: a burst of agents leaves user requests their turns.
                await self.lane.enter()
                return sized(await route.handler(request))
            except Exception as exc:
                response, unhandled = await self._handled(
                    request.scope, request.receive, route, exc
                )
                headers = list(response.raw_headers)
                return Answer(response.status_code, headers, bytes(response.body), unhandled)
        finally:
            if ticket is not None:
                self.admission.enroll_ended(ticket)

    async def serve(self, route: AgentRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one agent POST (from ASGI)."""
        start = time.perf_counter()
        request_id = self.request_id(scope)
        token = REQUEST.set(RequestContext(request_id))
        status = 500
        end: float | None = None
        try:
            shed = self.shed(route)
            if shed is not None:
                # Answered now, body unread: queued, it would be answered too late.
                answer = sized(shed)
            else:
                request = AgentRequest(scope, receive, self.services)
                answer = await self.answer(route, request, self.admitted(route))
            status = answer.status
            headers = answer.headers
            headers.append((b"x-request-id", request_id.encode()))
            end = time.perf_counter()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
            if answer.unhandled is not None:
                raise answer.unhandled
        finally:
            if end is None:
                end = time.perf_counter()
            record_request(self.metrics, scope, route.path, status, end - start)
            REQUEST.reset(token)

    async def _handled(
        self, scope: Scope, receive: Receive, route: AgentRoute, exc: Exception
    ) -> tuple[Response, Exception | None]:
        """The app's exception handler's response for `exc`, as a routed request gets it.

        A handler that re-raises (an error it does not recognise) leaves the request to the
        catch-all, as Starlette's outermost middleware would: that 500 is sent, then the
        error (returned second) propagates and the server drops the connection.
        """
        request = Request(scope, receive)
        handlers = self.app.exception_handlers
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        try:
            if handler is None:
                raise exc
            return await _respond(handler(request, exc)), None
        except Exception as error:
            access_log.exception("unhandled error in %s %s", scope["method"], route.path)
            fallback = handlers.get(Exception)
            if fallback is None:
                raise
            return await _respond(fallback(request, error)), error


@dataclass(slots=True)
class Answer:
    """A response to send: status, headers (X-Request-ID still to add), body; and an error
    the exception handlers did not recognise, raised once the response is sent."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    unhandled: Exception | None = None


def sized(answer: Reply) -> Answer:
    """A handler's reply as sent: its JSON body with its Content-Length."""
    body = answer.body
    return Answer(
        answer.status, [(b"content-length", b"%d" % len(body)), _JSON, *answer.headers], body
    )


async def _respond(result: Response | Awaitable[Response]) -> Response:
    # Exception handlers may be plain functions; the app's own are all async.
    return result if isinstance(result, Response) else await result


class FleetwatchApp(FastAPI):
    """FastAPI, with agents' POSTs handed to `lean` (when set) before anything else."""

    lean: LeanAgentApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lean = self.lean
        if lean is not None and scope["type"] == "http":
            route = lean.routes.get(scope["path"])
            if route is not None and scope["method"] == "POST":
                await lean.serve(route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)
