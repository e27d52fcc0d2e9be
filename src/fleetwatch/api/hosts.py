"""Hosts: list with filters and paging, one host, delete, and a host's stored logs."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import MAX_PAGE, ServicesDep
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.hosts import MAX_PER_PAGE
from fleetwatch.fleet.users import User
from fleetwatch.services import Services

router = APIRouter(prefix="/api/v1/fleet/hosts", tags=["hosts"])


def _visible(user: User, services: Services, host_id: int) -> int | None:
    """The host's team; 404 when it does not exist or the user may not see it."""
    state = services.hosts.by_id(host_id)
    team_id = state.team_id if state is not None else None
    Access(user).require_host(host_id, team_id, state is not None)
    return team_id


@router.get("")
async def list_hosts(
    user: CurrentUser,
    services: ServicesDep,
    status: Literal["online", "offline"] | None = None,
    platform: str | None = Query(None, max_length=64),
    team_id: int | None = Query(None, ge=0),
    label_id: int | None = Query(None, ge=0, description="only the label's members"),
    query: str | None = Query(None, max_length=255, description="text in hostname, uuid, serial"),
    page: int = Query(0, ge=0, le=MAX_PAGE),
    per_page: int = Query(100, ge=1, le=MAX_PER_PAGE),
    order_key: Literal[
        "id", "hostname", "platform", "os_version", "osquery_version", "seen_time", "enrolled_at"
    ] = "id",
    order_direction: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    """Hosts matching the filters, a page at a time (`page` from 0)."""
    access = Access(user)
    visible = None
    if access.visible_teams() is not None:
        visible = access.filter_hosts((h.id, h.team_id) for h in services.hosts.all())
    if label_id is not None:
        services.labels.get(label_id)  # 404 for an unknown label
        members = services.labels.members(label_id)
        visible = members if visible is None else visible & members
    items, total = await services.hosts.list(
        host_ids=visible,
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
    _visible(user, services, host_id)
    host = await services.hosts.get(host_id)
    # whoever sees the host sees its policies: the global ones and its own team's
    host["policies"] = services.policies.for_host(host_id)
    return {"host": host}


@router.delete("/{host_id}")
async def delete_host(host_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Forget the host; its node key gets node_invalid and it must enroll again."""
    team_id = _visible(user, services, host_id)
    Access(user).require_on_team(team_id, "maintainer", "deleting a host")
    await services.hosts.delete(host_id)
    await services.policies.host_deleted(host_id)
    await services.activities.record("deleted_host", user, {"host_id": host_id})
    return {}


@router.get("/{host_id}/logs")
async def host_logs(
    host_id: int,
    user: CurrentUser,
    services: ServicesDep,
    type: Literal["result", "status"] | None = None,
    name: str | None = Query(None, max_length=1024),
    page: int = Query(0, ge=0, le=MAX_PAGE),
    per_page: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The result and status log rows the host sent, newest first; a team user sees only
    the rows sent while the host was in one of their teams."""
    _visible(user, services, host_id)
    items, total = await services.result_logs.list(
        host_id,
        log_type=type,
        name=name,
        team_ids=Access(user).visible_teams(),
        page=page,
        per_page=per_page,
    )
    return {"logs": items, "count": total, "page": page, "per_page": per_page}
