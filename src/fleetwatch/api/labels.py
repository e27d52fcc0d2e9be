"""Labels CRUD: dynamic (`query`, optional `platform`) or manual (`hosts`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.fleet.authz import Access

router = APIRouter(prefix="/api/v1/fleet/labels", tags=["labels"])


class LabelBody(BaseModel):
    name: str | None = Field(None, max_length=255)
    description: str | None = Field(None, max_length=10_000)
    query: str | None = Field(None, max_length=100_000)
    platform: str | None = Field(None, max_length=32)
    hosts: list[int] | None = Field(None, max_length=100_000)


def _as_seen_by(access: Access, services: ServicesDep, label: dict[str, Any]) -> dict[str, Any]:
    """The label with `host_count` over the hosts the user may see (team users)."""
    if access.visible_teams() is None:
        return label
    pairs = [
        (h, s.team_id)
        for h in services.labels.members(int(label["id"]))
        if (s := services.hosts.by_id(h)) is not None
    ]
    return {**label, "host_count": len(access.filter_hosts(pairs))}


@router.get("")
async def list_labels(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    access = Access(user)
    return {"labels": [_as_seen_by(access, services, lab) for lab in services.labels.all_labels()]}


@router.get("/{label_id}")
async def get_label(label_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return {"label": _as_seen_by(Access(user), services, services.labels.get(label_id))}


@router.get("/{label_id}/hosts")
async def label_hosts(label_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """The label's members that the user may see."""
    services.labels.get(label_id)
    members = services.labels.members(label_id)
    access = Access(user)
    pairs = [(h, s.team_id) for h in members if (s := services.hosts.by_id(h)) is not None]
    items, total = await services.hosts.list(host_ids=access.filter_hosts(pairs), per_page=1000)
    return {"hosts": items, "count": total}


@router.post("", status_code=201)
async def create_label(body: LabelBody, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    Access(user).require_global("maintainer", "creating labels")
    label = await services.labels.create(body.model_dump(exclude_none=True))
    await services.activities.record(
        "created_label", user, {"label_id": label["id"], "name": label["name"]}
    )
    return {"label": label}


@router.patch("/{label_id}")
async def modify_label(
    label_id: int, body: LabelBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    Access(user).require_global("maintainer", "changing labels")
    label = await services.labels.update(label_id, body.model_dump(exclude_none=True))
    await services.activities.record("edited_label", user, {"label_id": label_id})
    return {"label": label}


@router.delete("/{label_id}")
async def delete_label(label_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    Access(user).require_global("maintainer", "deleting labels")
    await services.labels.delete(label_id)
    await services.activities.record("deleted_label", user, {"label_id": label_id})
    return {}
