"""Saved queries CRUD at /api/v1/fleet/queries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError

router = APIRouter(prefix="/api/v1/fleet/queries", tags=["saved queries"])


class SavedQueryBody(BaseModel):
    name: str | None = Field(None, max_length=255)
    description: str | None = Field(None, max_length=10_000)
    query: str | None = Field(None, max_length=100_000)
    observer_can_run: bool | None = None
    platform: str | None = Field(None, max_length=32)
    #: Where a run's result rows are also sent (names of [destinations.NAME] settings);
    #: checked by the service, whose error lists the known names.
    destinations: Any = None


def _can_write(user: CurrentUser) -> None:
    if user.global_role not in ("admin", "maintainer"):
        raise ApiError(403, "saving queries needs the admin or maintainer role")


@router.get("")
async def list_queries(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return {"queries": await services.saved_queries.list()}


@router.post("", status_code=201)
async def create_query(
    body: SavedQueryBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    _can_write(user)
    created = await services.saved_queries.create(body.model_dump(), user.id)
    await services.activities.record(
        "created_saved_query", user, {"query_id": created["id"], "name": created["name"]}
    )
    return {"query": created}


@router.get("/{query_id}")
async def get_query(query_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return {"query": await services.saved_queries.get(query_id)}


@router.patch("/{query_id}")
async def modify_query(
    query_id: int, body: SavedQueryBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    _can_write(user)
    updated = await services.saved_queries.update(query_id, body.model_dump())
    await services.activities.record("edited_saved_query", user, {"query_id": query_id})
    return {"query": updated}


@router.delete("/{query_id}")
async def delete_query(query_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    _can_write(user)
    await services.saved_queries.delete(query_id)
    await services.activities.record("deleted_saved_query", user, {"query_id": query_id})
    return {}
