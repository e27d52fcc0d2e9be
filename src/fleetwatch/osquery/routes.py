"""The agent endpoints. Every reply is a JSON object osquery can parse.

osquery ignores HTTP status codes: it fails a call whose body is not JSON or carries a
top-level `error`, and drops its node key on `node_invalid: true`. So an unknown node key
always gets `{"node_invalid": true, ...}`, a refused request a 4xx with `{"error": ...}`
(osquery keeps its data and retries), and a body over the limit 413 with `error`. An
address over its failed-enroll limit gets 429 with `{"node_invalid": true, "error": ...}`
(no key: osquery backs off and enrolls again later).

The handlers take an `AgentRequest` and return a `Reply` (osquery/call.py): the server
answers agents' POSTs through the lean path (osquery/lean_app.py); the FastAPI routes
below serve the same handlers for the OpenAPI schema and other methods.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from fleetwatch.dispatch.distributed import WriteError
from fleetwatch.fleet.errors import FleetError
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.rate_limits import address_key
from fleetwatch.ops.logs import bind_host
from fleetwatch.osquery.body import BodyError
from fleetwatch.osquery.call import AgentRequest, Reply, reply
from fleetwatch.services import Services

log = logging.getLogger(__name__)

#: Writes queued in the document index above which log batches are refused for a while.
MAX_WRITE_BACKLOG = 50_000

router = APIRouter(prefix="/api/v1/osquery", tags=["osquery agent API"])
#: Fleet also serves the unversioned paths; existing osquery flag files use either.
legacy_router = APIRouter(prefix="/api/osquery", include_in_schema=False)

#: An agent endpoint handler.
Handler = Callable[[AgentRequest], Awaitable[Reply]]

_EMPTY = reply({})


def _error(status: int, message: str) -> Reply:
    return reply({"error": message}, status)


def _node_invalid(message: str = "invalid node key; enroll again") -> Reply:
    return reply({"node_invalid": True, "error": message}, 401)


def _node_key(request: AgentRequest, body: dict[str, Any]) -> str:
    authorization = request.header(b"authorization") or ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "nodekey" and value.strip():
        return value.strip()
    key = body.get("node_key")
    return key if isinstance(key, str) else ""


async def _authenticated(request: AgentRequest) -> tuple[HostState, dict[str, Any]] | Reply:
    services = request.services
    try:
        body = await request.json_object()
    except BodyError as exc:
        return _error(exc.status, exc.message)
    host = await services.hosts.find(_node_key(request, body))
    if host is None:
        return _node_invalid()
    services.hosts.mark_seen(host)
    bind_host(host.id, host.host_identifier)
    return host, body


def _enroll_limited(wait: float) -> Reply:
    seconds = max(1, math.ceil(wait))
    return reply(
        {
            "node_invalid": True,
            "error": f"too many failed enrolls from this address; retry in {seconds} s",
        },
        429,
        ((b"retry-after", str(seconds).encode()),),
    )


async def enroll(request: AgentRequest) -> Reply:
    """Enroll a host with an enroll secret; answer its node key.

    Failed enrolls (a missing or wrong secret) are limited per client address: once an
    address has used up --enroll-failure-limit, every enroll from it gets a 429 until one is
    back, whatever secret it sends, so guessing learns nothing. Only failures spend the
    budget: the secret is compared in memory first, then a failure takes a token and a good
    secret only looks whether the address is blocked, so any number of hosts behind one NAT
    address may enroll at once, and a request abandoned half-way has spent nothing.
    """
    services = request.services
    try:
        body = await request.json_object()
    except BodyError as exc:
        return _error(exc.status, exc.message)
    secret = body.get("enroll_secret")
    given = isinstance(secret, str) and bool(secret)
    found = await services.secrets.find(secret) if isinstance(secret, str) and given else None
    limiter = services.enroll_limiter
    if limiter is not None:
        address = address_key(request.client_host)  # IPv6: the client's /64
        # A failure's answer is decided by its own (atomic) take of a token, so guesses sent
        # at once get at most the burst of "invalid" answers, the rest 429 like a blocked
        # address's good secret.
        wait = await (limiter.attempt(address) if found is None else limiter.blocked(address))
        if wait > 0:
            return _enroll_limited(wait)
    if not given:
        return _node_invalid("enroll_secret is missing; set --enroll_secret_path on the agent")
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
    return reply({"node_key": node_key, "node_invalid": False})


async def config(request: AgentRequest) -> Reply:
    """The osquery config for the host."""
    auth = await _authenticated(request)
    if isinstance(auth, Reply):
        return auth
    host, _ = auth
    services = request.services
    return reply(services.agent_config.for_agent(services.teams.config_of(host.team_id)))


async def log_endpoint(request: AgentRequest) -> Reply:
    """Result and status logs; answered only once stored."""
    auth = await _authenticated(request)
    if isinstance(auth, Reply):
        return auth
    host, body = auth
    services = request.services
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


async def distributed_read(request: AgentRequest) -> Reply:
    """Queries for the host; held up to --distributed-hold seconds when there are none."""
    auth = await _authenticated(request)
    if isinstance(auth, Reply):
        return auth
    host, _ = auth
    now = time.time()
    response = await request.services.distributed.read(
        host, now, needs_accelerate=host.detail_updated_at is None, when_gone=request.when_gone
    )
    return reply(response)


async def distributed_write(request: AgentRequest) -> Reply:
    """Results of distributed queries."""
    auth = await _authenticated(request)
    if isinstance(auth, Reply):
        return auth
    host, body = auth
    try:
        await request.services.distributed.write(host, body)
    except (WriteError, FleetError) as exc:
        return _error(400, str(exc))
    return _EMPTY


#: Endpoint path (after the version prefix) -> handler. distributed/read first: it is by far
#: the most frequent request.
HANDLERS: dict[str, Handler] = {
    "/distributed/read": distributed_read,
    "/distributed/write": distributed_write,
    "/log": log_endpoint,
    "/config": config,
    "/enroll": enroll,
}
#: The path prefixes agents use: versioned, and Fleet's unversioned form.
PREFIXES = (router.prefix, legacy_router.prefix)


def _route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        answer = await handler(AgentRequest(request.scope, request.receive, services))
        response = Response(answer.body, answer.status, media_type="application/json")
        response.raw_headers.extend(answer.headers)
        return response

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


for _router in (router, legacy_router):
    for _path, _handler in HANDLERS.items():
        _router.add_api_route(_path, _route(_handler), methods=["POST"])
