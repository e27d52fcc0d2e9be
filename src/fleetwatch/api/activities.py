"""The audit feed, newest first: for global users; another user's live queries redacted
(their SQL and targets belong to them and global admins, as their campaigns do)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import MAX_PAGE, ServicesDep
from fleetwatch.fleet.activities import redacted_for
from fleetwatch.fleet.authz import Access

router = APIRouter(prefix="/api/v1/fleet/activities", tags=["activities"])


@router.get("")
async def list_activities(
    user: CurrentUser,
    services: ServicesDep,
    page: int = Query(0, ge=0, le=MAX_PAGE),
    per_page: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    access = Access(user)
    access.require_global("observer", "reading the activity feed")
    items, total = await services.activities.list(page, per_page)
    shown = [redacted_for(access, item) for item in items]
    return {"activities": shown, "count": total, "page": page, "per_page": per_page}
