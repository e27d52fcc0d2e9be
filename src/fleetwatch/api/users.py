"""Users CRUD (admin only; a user may read themselves and change their own name, and their
password given the current one as `old_password`).

Changing a user's roles restarts their running query tasks within the new roles' scope;
deleting the user cancels them (`fleetwatch.query.task_scopes`, told by `users.update` and
`users.delete`). A new password (one's own or an admin's reset)
cancels them too, webhooks included: a stolen session's tasks stop with it. Either revokes
the user's tokens, which ends their open streams (`fleetwatch.fleet.stream_tokens`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.requests import Request

from fleetwatch.api.auth import CurrentUser, confirm_password, require_admin
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.users import TeamRole, Unset, User
from fleetwatch.query.task_requests import FACTORIES
from fleetwatch.services import Services

router = APIRouter(prefix="/api/v1/fleet/users", tags=["users"])


class TeamRoleBody(BaseModel):
    id: int
    role: str


class CreateUser(BaseModel):
    email: str = Field(max_length=255)
    password: str = Field(max_length=1024)
    name: str = Field("", max_length=255)
    #: Default: observer for a user given no teams; none for a user given team roles (a
    #: "team A observer" must not quietly see every team as a global observer).
    global_role: str | None = "observer"
    teams: list[TeamRoleBody] = Field(default_factory=list)

    def role(self) -> str | None:
        """The global role to create the user with."""
        if "global_role" not in self.model_fields_set and self.teams:
            return None
        return self.global_role


class ModifyUser(BaseModel):
    name: str | None = Field(None, max_length=255)
    password: str | None = Field(None, max_length=1024)
    #: The current password, required to change one's own (not to reset another user's).
    old_password: str | None = Field(None, max_length=1024)
    global_role: str | None = None
    teams: list[TeamRoleBody] | None = Field(None, max_length=10_000)


def _team_roles(services: ServicesDep, teams: list[TeamRoleBody]) -> list[TeamRole]:
    """The team roles of a request; 400 naming a team that does not exist."""
    for i, team in enumerate(teams):
        if not services.teams.known(team.id):
            raise ApiError(400, f"teams[{i}].id: no team with id {team.id}")
    return [TeamRole(t.id, t.role) for t in teams]


async def cancel_tasks(services: Services, user_id: int, reason: str) -> int:
    """Cancel the user's running query tasks: their scope was fixed by the roles the user
    had when creating them. Returns how many were cancelled."""
    cancel = {"taskInfo": {"stage": "CANCELLED", "failure": {"message": reason}}}
    cancelled = 0
    for factory in FACTORIES:
        for link in services.query_tasks.links(factory, user_id):
            if services.query_tasks.get(link).running:
                await services.query_tasks.patch(link, cancel)
                cancelled += 1
    return cancelled


@router.get("")
async def list_users(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    require_admin(user)
    return {"users": [u.to_json() for u in await services.users.all_users()]}


@router.post("", status_code=201)
async def create_user(body: CreateUser, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    require_admin(user)
    created = await services.users.create(
        body.email,
        body.password,
        body.role(),
        name=body.name,
        teams=_team_roles(services, body.teams),
    )
    await services.activities.record(
        "created_user",
        user,
        {"user_id": created.id, "email": created.email, "global_role": created.global_role},
    )
    return {"user": created.to_json()}


@router.get("/{user_id}")
async def get_user(user_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    if user.id != user_id:
        require_admin(user)
    return {"user": (await services.users.get(user_id)).to_json()}


async def _check_old_password(
    request: Request, old_password: str | None, user: User, services: Services
) -> None:
    """400 unless `old_password` is the user's current password; guesses count against
    the login limits, so a stolen session cannot try passwords faster than a login."""
    await confirm_password(
        request,
        services,
        user,
        old_password,
        field="old_password",
        why="to change it",
        wrong_status=400,
    )


@router.patch("/{user_id}")
async def modify_user(
    user_id: int, body: ModifyUser, request: Request, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Admins change anything (`global_role`, `teams`: [{id, role}]); a user may change
    their own name and password, the latter with `old_password`. A new password revokes
    all the user's tokens, the one of this request included (log in again), ends their open
    streams and cancels their running query tasks."""
    changes = body.model_fields_set - {"old_password"}
    if user.id != user_id or changes & {"global_role", "teams"}:
        require_admin(user)
    if body.password is not None and user.id == user_id:
        await _check_old_password(request, body.old_password, user, services)
    role: str | None | Unset = body.global_role if "global_role" in changes else Unset.UNSET
    teams = _team_roles(services, body.teams) if body.teams is not None else None
    updated = await services.users.update(
        user_id, name=body.name, password=body.password, global_role=role, teams=teams
    )
    # new roles re-scope the user's running tasks (`users.update` tells the task service)
    if body.password is not None:
        await cancel_tasks(services, user_id, "the user's password changed")
    await services.activities.record(
        "edited_user", user, {"user_id": user_id, "changed": sorted(changes)}
    )
    return {"user": updated.to_json()}


@router.delete("/{user_id}")
async def delete_user(user_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    require_admin(user)
    if user_id == user.id:
        raise ApiError(400, "you cannot delete yourself; ask another admin")
    await services.users.delete(user_id)  # which cancels their running tasks
    await services.activities.record("deleted_user", user, {"user_id": user_id})
    return {}
