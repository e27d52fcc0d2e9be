"""The osquery config agents receive: read and replace it (validated, at most 1 MiB).

`GET` also shows the runtime server settings that `PATCH` (in `app_config.py`) changes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from fleetwatch.api.auth import CurrentUser, require_admin
from fleetwatch.api.deps import ServicesDep
from fleetwatch.fleet.authz import Access

router = APIRouter(prefix="/api/v1/fleet/config", tags=["agent config"])


@router.get("")
async def get_config(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """The stored config and what agents receive (with the options fleetwatch adds), and
    the runtime `server_settings` (changed with PATCH, see `app_config.py`)."""
    Access(user).require_global("observer", "reading the agent config")
    return {
        "config": services.agent_config.stored(),
        "effective": services.agent_config.for_agent(),
        "server_settings": services.app_config.server_settings(),
    }


@router.put("")
async def put_config(
    user: CurrentUser, services: ServicesDep, config: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Replace the config: options, schedule, packs, decorators. Every SQL in it is
    checked as live query SQL (one read statement SQLite parses); a 400 names the query's
    path and the line and column of the problem."""
    require_admin(user)
    effective = await services.agent_config.replace(config)
    return {"config": services.agent_config.stored(), "effective": effective}
