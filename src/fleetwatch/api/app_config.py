"""Runtime server settings in Fleet's shape: `PATCH /api/v1/fleet/config` with
`{"server_settings": {"live_query_disabled": true|false}}` (admin only).

The path is shared with the agent config (`GET`/`PUT`, in `agent_config.py`), as in Fleet,
whose one app config holds both: `GET /api/v1/fleet/config` shows `server_settings` too.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from fleetwatch.api.auth import CurrentUser, require_admin
from fleetwatch.api.deps import ServicesDep

router = APIRouter(prefix="/api/v1/fleet/config", tags=["agent config"])


@router.patch("")
async def patch_server_settings(
    user: CurrentUser,
    services: ServicesDep,
    body: Annotated[Any, Body(examples=[{"server_settings": {"live_query_disabled": True}}])],
) -> dict[str, Any]:
    """Change server settings: `live_query_disabled` is the live query kill switch (every
    node sees the change; it survives restarts). Answers with the effective settings."""
    require_admin(user)
    changed = await services.app_config.patch(body)
    if changed:
        await services.activities.record("edited_server_settings", user, {"changes": changed})
    return {"server_settings": services.app_config.server_settings()}
