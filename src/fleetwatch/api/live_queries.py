"""Live queries: run a campaign, read its status and results, stop it, stream it (WS, SSE)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Query, WebSocket, WebSocketDisconnect
from starlette.requests import Request
from starlette.responses import StreamingResponse

from fleetwatch.api.auth import (
    CurrentUser,
    StreamUser,
    close_websocket,
    stream_token_hash,
    websocket_user,
)
from fleetwatch.api.deps import MAX_PAGE, ServicesDep, services_of
from fleetwatch.api.errors import ApiError, fleet_error_status
from fleetwatch.api.sse import KEEPALIVE, SlotStreamingResponse, sse_event, with_keepalive
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.errors import FleetError, Forbidden, Invalid, NotFound
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.targets import parse_targets
from fleetwatch.fleet.users import User
from fleetwatch.live.campaign_limits import limit_value
from fleetwatch.live.history import CampaignFilter, parse_time
from fleetwatch.live.history import list_campaigns as campaign_history
from fleetwatch.live.result_export import csv_lines, ndjson_lines
from fleetwatch.live.result_pages import CampaignResults, ResultOrder
from fleetwatch.live.result_scope import ResultScope
from fleetwatch.live.sample import parse_sample
from fleetwatch.live.stream import campaign_stream
from fleetwatch.responses import JsonResponse
from fleetwatch.services import Services
from fleetwatch.sql_check import InvalidSql

router = APIRouter(prefix="/api/v1/fleet", tags=["live queries"])
MAX_WAIT = 600.0
#: Largest `per_page` of the campaign list (as the host list's).
MAX_CAMPAIGNS_PER_PAGE = 1000


def _number(body: dict[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{key} must be a number of seconds")
    return float(value)


@router.post("/queries/run")
async def run_live_query(
    user: CurrentUser,
    services: ServicesDep,
    body: Annotated[
        dict[str, Any],
        Body(examples=[{"query": "SELECT * FROM osquery_info", "targets": [{"type": "all"}]}]),
    ],
) -> dict[str, Any]:
    """Start a campaign: `query` (SQL) or `query_id` (a saved query), and `targets`.

    Options: `timeout` (seconds to wait for online hosts: greater than 0, at most 86400),
    `queue_offline` (default true: offline targets get the query when they check in, until
    `queue_expiry` seconds), `wait` (seconds: answer with the results once every online
    target answered), `sample` (`{"percent": P}` or `{"count": K}`: a canary on a random
    subset of the targets, at least one host; re-run it with `"hosts": "remaining"`),
    `max_rows` and `max_bytes` (what the whole campaign stores at most: once reached no
    host is asked any more; defaults campaign_max_rows, campaign_max_bytes),
    `destinations` (names of configured destinations each result row is also sent to; a
    saved query's own by default; GET /api/v1/fleet/destinations lists them).
    """
    if ("query" in body) == ("query_id" in body):
        raise ApiError(400, "give exactly one of query (SQL) or query_id (a saved query)")
    query_id = body.get("query_id")
    sql: object = body.get("query")
    observer_can_run = False
    destinations = body.get("destinations")
    if query_id is not None:
        if isinstance(query_id, bool) or not isinstance(query_id, int):
            raise ApiError(400, "query_id must be an integer")
        saved = await services.saved_queries.get(query_id)
        sql, observer_can_run = saved["query"], bool(saved["observer_can_run"])
        if "destinations" not in body:
            destinations = saved.get("destinations") or None
    may_target = _may_target(Access(user), "observer" if observer_can_run else "maintainer")
    queue_offline = body.get("queue_offline", True)
    if not isinstance(queue_offline, bool):
        raise ApiError(400, "queue_offline must be true or false")
    wait = _number(body, "wait", None)
    if wait is not None and not 0 <= wait <= MAX_WAIT:
        raise ApiError(400, f"wait must be between 0 and {MAX_WAIT:g} seconds")
    targets = parse_targets(body.get("targets"), body.get("selected"))
    sample = parse_sample(body.get("sample"))
    max_rows, max_bytes = limit_value(body, "max_rows"), limit_value(body, "max_bytes")
    try:
        campaign = await services.campaigns.create(
            sql,
            targets,
            user_id=user.id,
            query_id=query_id,
            timeout=_number(body, "timeout", None),
            queue_offline=queue_offline,
            queue_expiry=_number(body, "queue_expiry", None),
            may_target=may_target,
            # woken after the audit record: its index write would queue behind the results
            wake=False,
            sample=sample,
            max_rows=max_rows,
            max_bytes=max_bytes,
            destinations=destinations,
        )
    except InvalidSql as exc:
        raise ApiError(400, f"invalid query: {exc}", line=exc.line, column=exc.column) from exc
    try:
        await services.activities.record(
            "live_query",
            user,
            {
                "campaign_id": campaign.id,
                "query": campaign.query,
                "query_id": query_id,
                "targets": targets.to_json(),
                "targets_count": len(campaign.host_ids),
                "online_count": len(campaign.online_at_start),
                "sample": campaign.sample,
            },
        )
    finally:
        services.campaigns.wake_hosts(campaign)
    if wait is None:
        return {"campaign_id": campaign.id, "campaign": campaign.to_json()}
    await services.campaigns.wait(campaign.id, wait)
    # one snapshot: status, totals and results describe the same instant
    current, results = await services.campaigns.read(campaign.id)
    results = ResultScope.of(Access(user)).filter(results, services.hosts.by_id)
    return {
        "campaign_id": campaign.id,
        "status": current["status"],
        "campaign": current,
        "results": results,
    }


def _may_target(access: Access, role: str) -> Callable[[HostState], bool]:
    """The hosts a user may query: with `role` globally, or on the host's team.

    Observers (and observer team members) may run only saved queries marked
    observer_can_run; new SQL needs the maintainer role.
    """
    if access.is_global:
        if not access.global_at_least(role):
            raise Forbidden(
                "running this query needs the maintainer role: observers may run only saved "
                "queries marked observer_can_run"
            )
        return lambda _host: True
    teams = {t.team_id for t in access.user.teams if access.on_team_at_least(t.team_id, role)}
    if not teams:
        raise Forbidden(
            f"running this query needs the {role} role on a team: observers may run only "
            "saved queries marked observer_can_run"
        )
    return lambda host: host.team_id in teams


def _scope_now(services: Services, user_id: int) -> Callable[[], Awaitable[ResultScope]]:
    """The result scope of the user's roles at the moment it is called: a stream asks for it
    at every batch of results, so a change of teams applies to the results still to come. A
    user deleted meanwhile sees nothing (their tokens are revoked, the stream is ending)."""

    async def scope() -> ResultScope:
        try:
            user = await services.users.get(user_id)
        except NotFound:
            return ResultScope(frozenset())
        return ResultScope.of(Access(user))

    return scope


async def _campaign(user: User, services: Services, campaign_id: int) -> dict[str, Any]:
    """The campaign, if the user started it or is a global admin; 404 otherwise."""
    campaign = await services.campaigns.get(campaign_id)
    if campaign.get("user_id") != user.id and not Access(user).global_at_least("admin"):
        raise NotFound(f"no campaign with id {campaign_id}")
    return campaign


@router.get("/campaigns")
async def list_campaigns(
    user: CurrentUser,
    services: ServicesDep,
    page: int = Query(0, ge=0, le=MAX_PAGE),
    per_page: int = Query(100, ge=1, le=MAX_CAMPAIGNS_PER_PAGE),
    query_id: int | None = None,
    sql: str | None = None,
    user_id: int | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Campaigns the user may see (running or over, kept for live_query_result_retention),
    newest first, paged like every list: `page` (from 0) and `per_page`; `count` is the
    total. Filters: `query_id`, `sql` (exact), `user_id`, `since` and `until` (RFC 3339,
    on the creation time). Users other than global admins see only their own."""
    filters = CampaignFilter(
        user_id=user_id,
        query_id=query_id,
        sql=sql,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
    )
    if not Access(user).global_at_least("admin"):
        if user_id is not None and user_id != user.id:
            return {"campaigns": [], "count": 0, "page": page, "per_page": per_page}
        filters = replace(filters, user_id=user.id)
    found, count = await campaign_history(services.campaigns, filters, page, per_page)
    return {"campaigns": found, "count": count, "page": page, "per_page": per_page}


@router.get("/campaigns/{campaign_id}")
async def get_campaign(
    campaign_id: int, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Status and totals: targeted, online, offline, responded, failed, pending, rows."""
    return {"campaign": await _campaign(user, services, campaign_id)}


@router.post("/campaigns/{campaign_id}/stop")
async def stop_campaign(
    campaign_id: int, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Stop asking hosts; the results so far are kept."""
    await _campaign(user, services, campaign_id)
    return {"campaign": await services.campaigns.stop_campaign(campaign_id)}


@router.get("/campaigns/{campaign_id}/results", response_model=None)
async def campaign_results(
    campaign_id: int,
    user: CurrentUser,
    services: ServicesDep,
    page: int = Query(0, ge=0, le=MAX_PAGE),
    per_page: int = Query(100, ge=1, le=10_000),
    after: str | None = None,
    order_key: str | None = None,
    order_direction: str | None = None,
    format: Literal["json", "csv", "ndjson"] = "json",
) -> JsonResponse | StreamingResponse:
    """One result per targeted host (pending and offline ones too), by host id, paged:
    `page` and `per_page`, or `after` (the previous page's `next` cursor). With
    `order_key` (wall_time_ms, memory, user_time, system_time) and `order_direction`
    (asc, desc), the hosts that answered, by that stat of osquery's. `?format=csv` gives one
    line per row with the host's id, name and status in front, `?format=ndjson` one result
    per line; both are streamed from the store in chunks."""
    campaign = await _campaign(user, services, campaign_id)
    order = ResultOrder.parse(order_key, order_direction)
    # a team-only user reads only their teams' hosts' entries, by their roles now (a cursor
    # from before a change of teams is only a position: it goes on under the new scope)
    scope = ResultScope.of(Access(user))
    results = CampaignResults(services.index, services.hosts, campaign, scope)
    if format != "json":
        lines = csv_lines(results, order) if format == "csv" else ndjson_lines(results, order)
        return StreamingResponse(
            lines,
            media_type="text/csv" if format == "csv" else "application/x-ndjson",
            headers={
                "Content-Disposition": (f'attachment; filename="campaign-{campaign_id}.{format}"')
            },
        )
    found = await results.page(order, per_page=per_page, page=page, after=after)
    # rendered by orjson directly: FastAPI's encoder would walk every row of the page first
    return JsonResponse(
        {
            "campaign_id": campaign_id,
            "results": found.results,
            "count": found.count,
            "page": page,
            "per_page": per_page,
            "next": found.next,
        }
    )


@router.get("/campaigns/{campaign_id}/events", response_model=None)
async def campaign_events(
    campaign_id: int, request: Request, user: StreamUser, services: ServicesDep
) -> SlotStreamingResponse:
    """Server-Sent Events: the WebSocket's messages, one per event; `id:` is a cursor that
    `Last-Event-ID` (or `?since=`) resumes after."""
    await _campaign(user, services, campaign_id)  # 404 before the stream starts
    since = _since(request.headers.get("last-event-id") or request.query_params.get("since"))
    keepalive = services.settings.sse_keepalive
    # one of the user's stream slots (429 when none is left); the response gives it back when
    # it ends by any path (SlotStreamingResponse); it ends when the token is revoked
    slot = services.stream_quota.acquire(user.id, stream_token_hash(request))

    async def events() -> AsyncIterator[bytes]:
        stream = campaign_stream(
            services.campaigns,
            services.subscriptions,
            campaign_id,
            since,
            _scope_now(services, user.id),
        )
        try:
            yield b": connected\n\n"
            async for batch in with_keepalive(stream, keepalive, slot.ended):
                if batch is None:
                    yield KEEPALIVE
                    continue
                # one write per batch: a burst of results is not a syscall per result
                # a result is serialized once for every stream of the campaign (encoded())
                yield b"".join(sse_event(m.encoded(), m.seq, m.type) for m in batch)
            if slot.ended_reason is not None:  # its token was revoked
                error = {"type": "error", "data": {"error": slot.ended_message}}
                yield sse_event(orjson.dumps(error), None, "error")
        finally:
            slot.release()
            with contextlib.suppress(RuntimeError):
                await stream.aclose()  # type: ignore[attr-defined]

    return SlotStreamingResponse(
        events(), slot, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _since(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ApiError(400, "since / Last-Event-ID must be a sequence number")
    return int(raw)


async def _pump_campaign(
    websocket: WebSocket,
    services: Services,
    user_id: int,
    campaign_id: int,
    since: int | None,
    stop: asyncio.Future[Any],
) -> None:
    """Send the campaign's messages until it ends, the client goes away or `stop` is done
    (the stream's token was revoked: the caller closes the socket).

    The client is watched while the stream is idle: a campaign can wait a day for offline
    hosts, and a closed socket must not keep its subscription until then.
    """

    async def send() -> None:
        stream = campaign_stream(
            services.campaigns,
            services.subscriptions,
            campaign_id,
            since,
            _scope_now(services, user_id),
        )
        try:
            async for batch in stream:
                for message in batch:
                    # serialized once for every stream of the campaign (see encoded())
                    await websocket.send_text(message.encoded().decode())
        finally:
            with contextlib.suppress(RuntimeError):
                await stream.aclose()  # type: ignore[attr-defined]

    async def drain_incoming() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # messages after the auth message are ignored

    sender = asyncio.create_task(send())
    reader = asyncio.create_task(drain_incoming())
    try:
        done, _ = await asyncio.wait({sender, reader, stop}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done and not stop.done():
            sender.result()  # a stream error is answered by the caller
    finally:
        for task in (sender, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task


@router.websocket("/results/websocket")
async def results_websocket(websocket: WebSocket) -> None:
    """Stream a campaign: `?campaign_id=N`; the token in the Authorization header, a
    `token` query parameter, or a first `{"type": "auth", "data": {"token": ...}}` message."""
    services = services_of(websocket)
    await websocket.accept()
    try:
        user = await websocket_user(websocket, services)
        raw_id = websocket.query_params.get("campaign_id", "")
        if not raw_id.isdigit():
            raise ApiError(400, "campaign_id must be given as ?campaign_id=N")
        since = _since(websocket.query_params.get("since"))
        campaign_id = int(raw_id)
        await _campaign(user, services, campaign_id)
        # 429 (an error message) when none is left; the slot ends when the token is revoked
        slot = services.stream_quota.acquire(user.id, stream_token_hash(websocket))
        try:
            await _pump_campaign(websocket, services, user.id, campaign_id, since, slot.ended)
            if slot.ended_reason is not None:  # an error message and close code 4401
                raise ApiError(401, slot.ended_message)
        finally:
            slot.release()
    except WebSocketDisconnect:
        return
    except (ApiError, FleetError, TimeoutError, ValueError) as exc:
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, FleetError):
            error = ApiError(fleet_error_status(exc), str(exc))
        else:
            error = ApiError(400, str(exc) or "timed out")
        message: dict[str, object] = {"type": "error", "data": {"error": error.message}}
        await close_websocket(websocket, error, message)
