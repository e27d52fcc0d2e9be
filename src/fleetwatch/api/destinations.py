"""GET /api/v1/fleet/destinations: the configured destinations and how delivery goes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.fleet.authz import Access

router = APIRouter(prefix="/api/v1/fleet/destinations", tags=["destinations"])


@router.get("")
async def list_destinations(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Every destination by name: `type`, `url` (without credentials or query string) or
    `path`, `index`, `batch_size`, `interval`, the `osquery_logs` it forwards, and this
    node's counts since it started: `sent`, `queued`, `failed` (refused for good), `dropped`
    (queue full, or undelivered past its retention), `retrying`, `last_error`,
    `last_error_at`, `last_sent_at`. Tokens are never shown. Global admins and maintainers
    (who run the campaigns that name them) may read it."""
    Access(user).require_global("maintainer", "reading the destinations' delivery state")
    return {"destinations": services.ops.destinations.views()}
