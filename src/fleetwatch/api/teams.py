"""Teams CRUD, team enroll secrets, and moving hosts between teams."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.errors import NotFound

router = APIRouter(prefix="/api/v1/fleet", tags=["teams"])


class TeamBody(BaseModel):
    name: str | None = Field(None, max_length=255)
    description: str | None = Field(None, max_length=10_000)
    config: dict[str, Any] | None = None


class NewSecret(BaseModel):
    secret: str | None = Field(None, max_length=255)


class Transfer(BaseModel):
    team_id: int | None
    hosts: list[int] = Field(max_length=100_000)


def _visible_team(access: Access, services: ServicesDep, team_id: int) -> dict[str, Any]:
    if not access.can_see_team(team_id):
        raise NotFound(f"no team with id {team_id}")
    return services.teams.get(team_id)


@router.get("/teams")
async def list_teams(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    access = Access(user)
    return {"teams": [t for t in services.teams.all_teams() if access.can_see_team(t["id"])]}


@router.post("/teams", status_code=201)
async def create_team(body: TeamBody, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    Access(user).require_global("admin", "creating teams")
    team = await services.teams.create(body.model_dump(exclude_none=True))
    await services.activities.record(
        "created_team", user, {"team_id": team["id"], "name": team["name"]}
    )
    return {"team": team}


@router.get("/teams/{team_id}")
async def get_team(team_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return {"team": _visible_team(Access(user), services, team_id)}


@router.patch("/teams/{team_id}")
async def modify_team(
    team_id: int, body: TeamBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    _visible_team(access, services, team_id)
    access.require_on_team(team_id, "admin", "changing a team")
    team = await services.teams.update(team_id, body.model_dump(exclude_none=True))
    await services.activities.record("edited_team", user, {"team_id": team_id})
    return {"team": team}


@router.delete("/teams/{team_id}")
async def delete_team(team_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    Access(user).require_global("admin", "deleting teams")
    await services.teams.delete(team_id)
    moved = services.hosts.forget_team(team_id)
    await services.hosts.transfer(list(moved), None)
    await services.policies.team_deleted(team_id)
    await services.policies.hosts_moved(moved)
    await services.secrets.refresh()  # the team's secrets went with it, on every node
    # Its members lose their role on it (a later team could get the same id on SQLite),
    # and their query tasks restart within the teams they have left (`users.update`).
    for member in await services.users.all_users():
        if any(role.team_id == team_id for role in member.teams):
            remaining = [role for role in member.teams if role.team_id != team_id]
            await services.users.update(member.id, teams=remaining)
    await services.activities.record("deleted_team", user, {"team_id": team_id})
    return {}


@router.get("/teams/{team_id}/secrets")
async def team_secrets(team_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    access = Access(user)
    _visible_team(access, services, team_id)
    access.require_on_team(team_id, "admin", "reading a team's enroll secrets")
    return {"secrets": [s.to_json() for s in await services.secrets.list(team_id)]}


@router.post("/teams/{team_id}/secrets", status_code=201)
async def add_team_secret(
    team_id: int, user: CurrentUser, services: ServicesDep, body: NewSecret | None = None
) -> dict[str, Any]:
    access = Access(user)
    _visible_team(access, services, team_id)
    access.require_on_team(team_id, "admin", "adding a team enroll secret")
    created = await services.secrets.add(body.secret if body else None, team_id)
    await services.activities.record("added_enroll_secret", user, {"team_id": team_id})
    return {"secret": created.to_json()}


@router.delete("/teams/{team_id}/secrets/{secret}")
async def revoke_team_secret(
    team_id: int, secret: str, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    _visible_team(access, services, team_id)
    access.require_on_team(team_id, "admin", "revoking a team enroll secret")
    await services.secrets.revoke(secret, team_id)
    await services.activities.record("revoked_enroll_secret", user, {"team_id": team_id})
    return {}


@router.post("/hosts/transfer")
async def transfer_hosts(
    body: Transfer, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Move hosts to a team (`team_id` null: no team)."""
    access = Access(user)
    if body.team_id is not None:
        _visible_team(access, services, body.team_id)
    access.require_on_team(body.team_id, "maintainer", "moving hosts")
    for host_id in body.hosts:
        state = services.hosts.by_id(host_id)
        access.require_host(host_id, state.team_id if state else None, state is not None)
        access.require_on_team(state.team_id if state else None, "maintainer", "moving hosts")
    await services.hosts.transfer(body.hosts, body.team_id)
    await services.policies.hosts_moved(body.hosts)
    await services.activities.record(
        "transferred_hosts", user, {"team_id": body.team_id, "hosts": body.hosts}
    )
    return {}
