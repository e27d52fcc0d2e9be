"""The agent endpoints. Every reply is a JSON object osquery can parse.

osquery ignores HTTP status codes: it fails a call whose body is not JSON or carries a
top-level `error`, and drops its node key on `node_invalid: true`. So an unknown node key
always gets `{"node_invalid": true, ...}`, a refused request a 4xx with `{"error": ...}`
(osquery keeps its data and retries), and a body over the limit 413 with `error`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from fleetwatch.api.responses import JsonResponse
from fleetwatch.fleet.errors import FleetError
from fleetwatch.fleet.hosts import HostState
from fleetwatch.ops.logs import bind_host
from fleetwatch.osquery.body import BodyError, header, read_json_object
from fleetwatch.osquery.distributed import WriteError
from fleetwatch.services import Services

log = logging.getLogger(__name__)

#: Writes queued in the document index above which log batches are refused for a while.
MAX_WRITE_BACKLOG = 50_000

router = APIRouter(prefix="/api/v1/osquery", tags=["osquery agent API"])
#: Fleet also serves the unversioned paths; existing osquery flag files use either.
legacy_router = APIRouter(prefix="/api/osquery", include_in_schema=False)

_EMPTY = JsonResponse({})


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status_code=status)


def _node_invalid(message: str = "invalid node key; enroll again") -> JsonResponse:
    return JsonResponse({"node_invalid": True, "error": message}, status_code=401)


def _services(request: Request) -> Services:
    # Straight from app state, not a `ServicesDep` parameter: FastAPI runs a sync dependency
    # in its thread pool, a thread hop per request that cost a check-in much of its time.
    services: Services = request.app.state.services
    return services


def _node_key(request: Request, body: dict[str, Any]) -> str:
    authorization = header(request, b"authorization") or ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "nodekey" and value.strip():
        return value.strip()
    key = body.get("node_key")
    return key if isinstance(key, str) else ""


async def _authenticated(
    request: Request, services: Services
) -> tuple[HostState, dict[str, Any]] | JsonResponse:
    try:
        body = await read_json_object(request, services.settings.max_body_bytes)
    except BodyError as exc:
        return _error(exc.status, exc.message)
    host = await services.hosts.find(_node_key(request, body))
    if host is None:
        return _node_invalid()
    services.hosts.mark_seen(host)
    bind_host(host.id, host.host_identifier)
    return host, body


async def enroll(request: Request) -> JsonResponse:
    """Enroll a host with an enroll secret; answer its node key."""
    services = _services(request)
    try:
        body = await read_json_object(request, services.settings.max_body_bytes)
    except BodyError as exc:
        return _error(exc.status, exc.message)
    secret = body.get("enroll_secret")
    if not isinstance(secret, str) or not secret:
        return _node_invalid("enroll_secret is missing; set --enroll_secret_path on the agent")
    found = await services.secrets.find(secret)
    if found is None:
        return _node_invalid("invalid enroll secret")
    identifier = body.get("host_identifier")
    if not isinstance(identifier, str) or not identifier.strip():
        return _error(400, "host_identifier must be a non-empty string")
    if len(identifier) > 255:
        return _error(400, "host_identifier is longer than 255 characters")
    details = body.get("host_details")
    if details is None:
        details = {}
    if not isinstance(details, dict):
        return _error(400, "host_details must be an object of table name to row")
    platform_type = body.get("platform_type")
    host, node_key = await services.hosts.enroll(
        identifier.strip(),
        platform_type if isinstance(platform_type, str) else "",
        details,
        found.team_id,
    )
    bind_host(host.id, host.host_identifier)
    log.info("host %s enrolled as id %s", identifier, host.id)
    return JsonResponse({"node_key": node_key, "node_invalid": False})


async def config(request: Request) -> JsonResponse:
    """The osquery config for the host."""
    services = _services(request)
    auth = await _authenticated(request, services)
    if isinstance(auth, JsonResponse):
        return auth
    host, _ = auth
    return JsonResponse(services.agent_config.for_agent(services.teams.config_of(host.team_id)))


async def log_endpoint(request: Request) -> JsonResponse:
    """Result and status logs; answered only once stored."""
    services = _services(request)
    auth = await _authenticated(request, services)
    if isinstance(auth, JsonResponse):
        return auth
    host, body = auth
    if services.index.backlog > MAX_WRITE_BACKLOG:
        # Shed load instead of queueing without bound: osquery keeps the batch and retries
        # with backoff, so nothing is lost.
        return _error(429, "the server is busy storing logs; retry later")
    log_type = body.get("log_type")
    data = body.get("data")
    if not isinstance(log_type, str):
        return _error(400, "log_type must be 'result' or 'status'")
    if data is None:
        data = []
    if not isinstance(data, list):
        return _error(400, "data must be a list of log lines")
    try:
        await services.result_logs.ingest(host, log_type, data)
    except FleetError as exc:
        return _error(400, str(exc))
    return _EMPTY


async def distributed_read(request: Request) -> JsonResponse:
    """Queries for the host; held up to --distributed-hold seconds when there are none."""
    services = _services(request)
    auth = await _authenticated(request, services)
    if isinstance(auth, JsonResponse):
        return auth
    host, _ = auth
    now = time.time()
    response = await services.distributed.read(
        host, now, needs_accelerate=host.detail_updated_at is None
    )
    return JsonResponse(response)


async def distributed_write(request: Request) -> JsonResponse:
    """Results of distributed queries."""
    services = _services(request)
    auth = await _authenticated(request, services)
    if isinstance(auth, JsonResponse):
        return auth
    host, body = auth
    try:
        await services.distributed.write(host, body)
    except (WriteError, FleetError) as exc:
        return _error(400, str(exc))
    return _EMPTY


# Routes are matched in order: the check-in (distributed/read) comes first, as it is by far
# the most frequent request.
for _router in (router, legacy_router):
    _router.add_api_route("/distributed/read", distributed_read, methods=["POST"])
    _router.add_api_route("/distributed/write", distributed_write, methods=["POST"])
    _router.add_api_route("/log", log_endpoint, methods=["POST"])
    _router.add_api_route("/config", config, methods=["POST"])
    _router.add_api_route("/enroll", enroll, methods=["POST"])


class AgentFastPath:
    """Serves the agent endpoints' POSTs straight from the middleware stack.

    They are most of a server's requests (every host checks in every few seconds) and need
    none of FastAPI's routing, dependency solving or exception middleware, which cost more
    than the endpoints themselves (by profile, three quarters of a check-in's server CPU).
    Installed inside the request middleware (metrics, request id, access log), which sees
    the same route as before; the routes stay registered for the OpenAPI schema and for
    other methods. Exceptions go to the app's own exception handlers, as routed requests'.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: dict[str, APIRoute] = {
            route.path: route
            for r in (router, legacy_router)
            for route in r.routes
            if isinstance(route, APIRoute) and "POST" in (route.methods or ())
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = _handler_for(scope, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler_for(scope: Scope, exc: Exception) -> Any:
    handlers: dict[Any, Any] = getattr(scope.get("app"), "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
