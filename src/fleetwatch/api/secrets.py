"""Enroll secrets: global ones; per-team ones come with teams."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fleetwatch.api.auth import CurrentUser, require_admin
from fleetwatch.api.deps import ServicesDep

router = APIRouter(prefix="/api/v1/fleet/secrets", tags=["enroll secrets"])


class NewSecret(BaseModel):
    secret: str | None = Field(None, max_length=255)


@router.get("")
async def list_secrets(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """The global secrets, as stored (what `fleetwatch secret list` prints)."""
    require_admin(user)
    return {"secrets": [s.to_json() for s in await services.secrets.list(None)]}


@router.post("", status_code=201)
async def add_secret(
    user: CurrentUser, services: ServicesDep, body: NewSecret | None = None
) -> dict[str, Any]:
    """Add a global secret; a random one when the body names none."""
    require_admin(user)
    created = await services.secrets.add(body.secret if body else None, None)
    await services.activities.record("added_enroll_secret", user, {"team_id": None})
    return {"secret": created.to_json()}


@router.delete("/{secret}")
async def revoke_secret(secret: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Revoke a global secret: new enrollments with it fail; enrolled hosts stay."""
    require_admin(user)
    await services.secrets.revoke(secret, None)
    await services.activities.record("revoked_enroll_secret", user, {"team_id": None})
    return {}
