"""Live queries: run a campaign, read its status and results, stop it, stream it (WS, SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Query, WebSocket, WebSocketDisconnect
from starlette.requests import Request
from starlette.responses import StreamingResponse

from fleetwatch.api.auth import CurrentUser, StreamUser, bearer_token, resolve_token
from fleetwatch.api.deps import ServicesDep, services_of
from fleetwatch.api.errors import ApiError
from fleetwatch.api.sse import KEEPALIVE, sse_event, with_keepalive
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.errors import FleetError, Forbidden, Invalid, NotFound
from fleetwatch.fleet.hosts import HostState
from fleetwatch.fleet.users import User
from fleetwatch.live.sql_check import InvalidSql
from fleetwatch.live.stream import campaign_stream
from fleetwatch.live.targets import parse_targets
from fleetwatch.services import Services

router = APIRouter(prefix="/api/v1/fleet", tags=["live queries"])
MAX_WAIT = 600.0


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

    Options: `timeout` (seconds to wait for online hosts), `queue_offline` (default true:
    offline targets get the query when they check in, until `queue_expiry` seconds),
    `wait` (seconds: answer with the results once every online target answered).
    """
    if ("query" in body) == ("query_id" in body):
        raise ApiError(400, "give exactly one of query (SQL) or query_id (a saved query)")
    query_id = body.get("query_id")
    sql: object = body.get("query")
    observer_can_run = False
    if query_id is not None:
        if isinstance(query_id, bool) or not isinstance(query_id, int):
            raise ApiError(400, "query_id must be an integer")
        saved = await services.saved_queries.get(query_id)
        sql, observer_can_run = saved["query"], bool(saved["observer_can_run"])
    may_target = _may_target(Access(user), "observer" if observer_can_run else "maintainer")
    queue_offline = body.get("queue_offline", True)
    if not isinstance(queue_offline, bool):
        raise ApiError(400, "queue_offline must be true or false")
    wait = _number(body, "wait", None)
    if wait is not None and not 0 <= wait <= MAX_WAIT:
        raise ApiError(400, f"wait must be between 0 and {MAX_WAIT:g} seconds")
    targets = parse_targets(body.get("targets"), body.get("selected"))
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
            },
        )
    finally:
        services.campaigns.wake_hosts(campaign)
    if wait is None:
        return {"campaign_id": campaign.id, "campaign": campaign.to_json()}
    await services.campaigns.wait(campaign.id, wait)
    current = await services.campaigns.get(campaign.id)
    results = await services.campaigns.host_results(campaign.id)
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


async def _campaign(user: User, services: Services, campaign_id: int) -> dict[str, Any]:
    """The campaign, if the user started it or is a global admin; 404 otherwise."""
    campaign = await services.campaigns.get(campaign_id)
    if campaign.get("user_id") != user.id and not Access(user).global_at_least("admin"):
        raise NotFound(f"no campaign with id {campaign_id}")
    return campaign


@router.get("/campaigns")
async def list_campaigns(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Active campaigns (running or queued for offline hosts) the user may see."""
    admin = Access(user).global_at_least("admin")
    return {
        "campaigns": [
            c for c in services.campaigns.list_active() if admin or c["user_id"] == user.id
        ]
    }


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


CSV_BASE = ["host_id", "hostname", "status", "error"]


@router.get("/campaigns/{campaign_id}/results", response_model=None)
async def campaign_results(
    campaign_id: int,
    user: CurrentUser,
    services: ServicesDep,
    page: int = Query(0, ge=0),
    per_page: int = Query(100, ge=1, le=10_000),
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | StreamingResponse:
    """One result per targeted host (pending and offline ones too); `?format=csv` gives
    one line per row with the host's id, name and status in front, streamed."""
    await _campaign(user, services, campaign_id)
    results = await services.campaigns.host_results(campaign_id)
    if format == "csv":
        return StreamingResponse(
            _csv_lines(results),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
        )
    start = page * per_page
    return {
        "campaign_id": campaign_id,
        "results": results[start : start + per_page],
        "count": len(results),
        "page": page,
        "per_page": per_page,
    }


async def _csv_lines(results: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    columns: list[str] = []
    seen: set[str] = set()
    for result in results:
        for key in result.get("columns") or [k for row in result["rows"] for k in row]:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_BASE + columns)
    for i, result in enumerate(results):
        base = [result["host_id"], result["hostname"], result["status"], result["error"] or ""]
        for row in result["rows"] or [{}]:
            writer.writerow(base + [row.get(c, "") for c in columns])
        if i % 100 == 99 or i == len(results) - 1:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if not results:
        yield buffer.getvalue().encode()


@router.get("/campaigns/{campaign_id}/events", response_model=None)
async def campaign_events(
    campaign_id: int, request: Request, user: StreamUser, services: ServicesDep
) -> StreamingResponse:
    """Server-Sent Events: the WebSocket's messages, one per event; `id:` is a cursor that
    `Last-Event-ID` (or `?since=`) resumes after."""
    await _campaign(user, services, campaign_id)  # 404 before the stream starts
    since = _since(request.headers.get("last-event-id") or request.query_params.get("since"))
    keepalive = services.settings.sse_keepalive

    async def events() -> AsyncIterator[bytes]:
        stream = campaign_stream(services.campaigns, services.subscriptions, campaign_id, since)
        try:
            yield b": connected\n\n"
            async for batch in with_keepalive(stream, keepalive):
                if batch is None:
                    yield KEEPALIVE
                    continue
                # one write per batch: a burst of results is not a syscall per result
                yield b"".join(sse_event(orjson.dumps(m.to_json()), m.seq, m.type) for m in batch)
        finally:
            with contextlib.suppress(RuntimeError):
                await stream.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _since(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ApiError(400, "since / Last-Event-ID must be a sequence number")
    return int(raw)


async def _pump_campaign(
    websocket: WebSocket, services: Services, campaign_id: int, since: int | None
) -> None:
    """Send the campaign's messages until it ends or the client goes away.

    The client is watched while the stream is idle: a campaign can wait a day for offline
    hosts, and a closed socket must not keep its subscription until then.
    """

    async def send() -> None:
        stream = campaign_stream(services.campaigns, services.subscriptions, campaign_id, since)
        try:
            async for batch in stream:
                for message in batch:
                    payload = message.to_json()
                    if message.seq is not None:
                        payload["seq"] = message.seq
                    await websocket.send_json(payload)
        finally:
            with contextlib.suppress(RuntimeError):
                await stream.aclose()  # type: ignore[attr-defined]

    async def drain_incoming() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # messages after the auth message are ignored

    sender = asyncio.create_task(send())
    reader = asyncio.create_task(drain_incoming())
    try:
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
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
        token = bearer_token(websocket, allow_query=True)
        if token is None:
            first = await asyncio.wait_for(websocket.receive_json(), 30)
            if not isinstance(first, dict) or first.get("type") != "auth":
                raise ApiError(401, 'send {"type": "auth", "data": {"token": ...}} first')
            data = first.get("data")
            token = data.get("token") if isinstance(data, dict) else None
            if not isinstance(token, str):
                raise ApiError(401, "the auth message needs data.token")
        user = await resolve_token(services, token)
        raw_id = websocket.query_params.get("campaign_id", "")
        if not raw_id.isdigit():
            raise ApiError(400, "campaign_id must be given as ?campaign_id=N")
        since = _since(websocket.query_params.get("since"))
        campaign_id = int(raw_id)
        await _campaign(user, services, campaign_id)
        await _pump_campaign(websocket, services, campaign_id, since)
    except WebSocketDisconnect:
        return
    except (ApiError, FleetError, TimeoutError, ValueError) as exc:
        text = exc.message if isinstance(exc, ApiError) else str(exc) or "timed out"
        try:
            await websocket.send_json({"type": "error", "data": {"error": text}})
            await websocket.close(code=1008)
        except Exception:  # the client is already gone
            return
