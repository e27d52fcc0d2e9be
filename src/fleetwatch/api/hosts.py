"""Hosts: list with filters and paging, one host, delete, and a host's stored logs."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.fleet.hosts import MAX_PER_PAGE

router = APIRouter(prefix="/api/v1/fleet/hosts", tags=["hosts"])


@router.get("")
async def list_hosts(
    user: CurrentUser,
    services: ServicesDep,
    status: Literal["online", "offline"] | None = None,
    platform: str | None = Query(None, max_length=64),
    team_id: int | None = Query(None, ge=0),
    query: str | None = Query(None, max_length=255, description="text in hostname, uuid, serial"),
    page: int = Query(0, ge=0),
    per_page: int = Query(100, ge=1, le=MAX_PER_PAGE),
    order_key: Literal[
        "id", "hostname", "platform", "os_version", "osquery_version", "seen_time", "enrolled_at"
    ] = "id",
    order_direction: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    """Hosts matching the filters, a page at a time (`page` from 0)."""
    items, total = await services.hosts.list(
        status=status,
        platform=platform,
        team_id=team_id,
        query=query,
        page=page,
        per_page=per_page,
        order_key=order_key,
        descending=order_direction == "desc",
    )
    return {"hosts": items, "count": total, "page": page, "per_page": per_page}


@router.get("/{host_id}")
async def get_host(host_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return {"host": await services.hosts.get(host_id)}


@router.delete("/{host_id}")
async def delete_host(host_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Forget the host; its node key gets node_invalid and it must enroll again."""
    await services.hosts.delete(host_id)
    return {}


@router.get("/{host_id}/logs")
async def host_logs(
    host_id: int,
    user: CurrentUser,
    services: ServicesDep,
    type: Literal["result", "status"] | None = None,
    name: str | None = Query(None, max_length=1024),
    page: int = Query(0, ge=0),
    per_page: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The result and status log rows the host sent, newest first."""
    await services.hosts.get(host_id)  # 404 for an unknown host
    items, total = await services.result_logs.list(
        host_id, log_type=type, name=name, page=page, per_page=per_page
    )
    return {"logs": items, "count": total, "page": page, "per_page": per_page}
