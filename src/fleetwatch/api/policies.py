"""Policies: global (`/api/v1/fleet/policies`) and per team (`/api/v1/fleet/teams/{id}/
policies`), the hosts by response, and webhooks of failing/passing events.

Roles as Fleet: global maintainers and admins write global policies, a team's maintainers
and admins (and global ones) that team's; everyone who sees a policy reads it. A team
user sees global policies and their teams' ones, counted over the hosts they may see.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.errors import NotFound
from fleetwatch.fleet.hosts import MAX_PER_PAGE
from fleetwatch.fleet.users import User
from fleetwatch.outbound import OutboundRefused, OutboundUnresolved
from fleetwatch.policies.automations import webhook_json
from fleetwatch.policies.model import Policy
from fleetwatch.services import Services
from fleetwatch.sql_check import InvalidSql

router = APIRouter(prefix="/api/v1/fleet", tags=["policies"])

RESPONSES = {"pass": "pass", "fail": "fail", "unknown": ""}


class PolicyBody(BaseModel):
    name: str | None = Field(None, max_length=255)
    query: str | None = Field(None, max_length=100_000)
    description: str | None = Field(None, max_length=10_000)
    resolution: str | None = Field(None, max_length=10_000)
    platform: str | None = Field(None, max_length=64)
    interval: int | None = None


class WebhookBody(BaseModel):
    url: str = Field(max_length=2048)


def _visible(access: Access, services: Services) -> set[int] | None:
    """The hosts the user may see (None: every host)."""
    if access.visible_teams() is None:
        return None
    return access.filter_hosts((h.id, h.team_id) for h in services.hosts.all())


def _team(access: Access, services: Services, team_id: int) -> None:
    """404 for a team that does not exist or the user may not see."""
    if not access.can_see_team(team_id):
        raise NotFound(f"no team with id {team_id}")
    services.teams.get(team_id)


def _readable(access: Access, services: Services, policy_id: int) -> Policy:
    """Any policy the user may see (a team's only by its members)."""
    policy = services.policies.find(policy_id)
    if policy.team_id is not None and not access.can_see_team(policy.team_id):
        raise NotFound(f"no policy with id {policy_id}")
    return policy


def _require_writer(access: Access, team_id: int | None, what: str) -> None:
    access.require_on_team(team_id, "maintainer", what)


async def _create(
    body: PolicyBody, user: User, services: Services, team_id: int | None
) -> dict[str, Any]:
    try:
        policy = await services.policies.create(body.model_dump(exclude_none=True), team_id)
    except InvalidSql as exc:
        raise ApiError(400, f"invalid query: {exc}", line=exc.line, column=exc.column) from exc
    await services.activities.record(
        "created_policy", user, {"policy_id": policy.id, "name": policy.name, "team_id": team_id}
    )
    return {"policy": services.policies.to_json(policy)}


async def _modify(
    policy: Policy, body: PolicyBody, user: User, services: Services
) -> dict[str, Any]:
    try:
        await services.policies.update(policy, body.model_dump(exclude_none=True))
    except InvalidSql as exc:
        raise ApiError(400, f"invalid query: {exc}", line=exc.line, column=exc.column) from exc
    await services.activities.record("edited_policy", user, {"policy_id": policy.id})
    return {"policy": services.policies.to_json(policy)}


async def _delete(policy: Policy, user: User, services: Services) -> dict[str, Any]:
    await services.policies.delete(policy)
    await services.activities.record("deleted_policy", user, {"policy_id": policy.id})
    return {}


# --- global policies ---------------------------------------------------------------------


@router.get("/policies")
async def list_policies(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Global policies with their counts (over the hosts the user may see)."""
    access = Access(user)
    teams = access.visible_teams()
    return {
        "policies": [services.policies.to_json(p, teams) for p in services.policies.listed(None)]
    }


@router.post("/policies", status_code=201)
async def create_policy(
    body: PolicyBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    _require_writer(Access(user), None, "creating global policies")
    return await _create(body, user, services, None)


@router.get("/policies/{policy_id}")
async def get_policy(policy_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    access = Access(user)
    policy = _readable(access, services, policy_id)
    return {"policy": services.policies.to_json(policy, access.visible_teams())}


@router.patch("/policies/{policy_id}")
async def modify_policy(
    policy_id: int, body: PolicyBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    policy = _readable(access, services, policy_id)
    _require_writer(access, policy.team_id, "changing this policy")
    return await _modify(policy, body, user, services)


@router.delete("/policies/{policy_id}")
async def delete_policy(policy_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    access = Access(user)
    policy = _readable(access, services, policy_id)
    _require_writer(access, policy.team_id, "deleting this policy")
    return await _delete(policy, user, services)


@router.get("/policies/{policy_id}/hosts")
async def policy_hosts(
    policy_id: int,
    user: CurrentUser,
    services: ServicesDep,
    response: Literal["pass", "fail", "unknown"] | None = Query(
        None, description="only hosts with this answer (unknown: none yet, or an error)"
    ),
    page: int = Query(0, ge=0),
    per_page: int = Query(100, ge=1, le=MAX_PER_PAGE),
) -> dict[str, Any]:
    """The hosts that run the policy (that the user may see), by response, a page at a time."""
    access = Access(user)
    policy = _readable(access, services, policy_id)
    ids = services.policies.host_ids(policy, None if response is None else RESPONSES[response])
    visible = _visible(access, services)
    if visible is not None:
        ids &= visible
    items, total = await services.hosts.list(host_ids=ids, page=page, per_page=per_page)
    for item in items:
        answer = services.policies.results.answer(policy.id, int(item["id"]))
        item["policy_response"] = answer.response if answer is not None else ""
        item["policy_error"] = answer.error if answer is not None else ""
    return {"hosts": items, "count": total, "page": page, "per_page": per_page}


# --- webhooks ----------------------------------------------------------------------------


@router.get("/policies/{policy_id}/webhooks")
async def list_webhooks(policy_id: int, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    access = Access(user)
    policy = _readable(access, services, policy_id)
    _require_writer(access, policy.team_id, "reading this policy's webhooks")
    hooks = services.policy_automations.webhooks(policy.id)
    return {"webhooks": [webhook_json(h) for h in hooks]}


@router.post("/policies/{policy_id}/webhooks", status_code=201)
async def add_webhook(
    policy_id: int, body: WebhookBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """POST each failing/passing event of the policy to `url`, from now on."""
    access = Access(user)
    policy = _readable(access, services, policy_id)
    _require_writer(access, policy.team_id, "adding a webhook to this policy")
    try:
        scheme = httpx.URL(body.url).scheme
    except httpx.InvalidURL:
        scheme = ""
    if scheme not in ("http", "https"):
        raise ApiError(400, "url must be an http:// or https:// URL, e.g. https://hooks.example/p")
    try:
        hook = await services.policy_automations.add(policy.id, body.url)
    except (OutboundRefused, OutboundUnresolved) as exc:
        raise ApiError(400, f"url refused: {exc}") from exc
    await services.activities.record(
        "added_policy_webhook", user, {"policy_id": policy.id, "webhook_id": hook.id}
    )
    return {"webhook": webhook_json(hook)}


@router.delete("/policies/{policy_id}/webhooks/{webhook_id}")
async def delete_webhook(
    policy_id: int, webhook_id: int, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    policy = _readable(access, services, policy_id)
    _require_writer(access, policy.team_id, "deleting this policy's webhooks")
    if webhook_id not in {h.id for h in services.policy_automations.webhooks(policy.id)}:
        raise NotFound(f"no webhook with id {webhook_id} on policy {policy_id}")
    await services.policy_automations.remove(webhook_id)
    return {}


# --- team policies -----------------------------------------------------------------------


@router.get("/teams/{team_id}/policies")
async def list_team_policies(
    team_id: int, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    _team(access, services, team_id)
    teams = access.visible_teams()
    policies = services.policies.listed(team_id)
    return {"policies": [services.policies.to_json(p, teams) for p in policies]}


@router.post("/teams/{team_id}/policies", status_code=201)
async def create_team_policy(
    team_id: int, body: PolicyBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    _team(access, services, team_id)
    _require_writer(access, team_id, "creating this team's policies")
    return await _create(body, user, services, team_id)


@router.get("/teams/{team_id}/policies/{policy_id}")
async def get_team_policy(
    team_id: int, policy_id: int, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    _team(access, services, team_id)
    policy = services.policies.get(policy_id, team_id)
    return {"policy": services.policies.to_json(policy, access.visible_teams())}


@router.patch("/teams/{team_id}/policies/{policy_id}")
async def modify_team_policy(
    team_id: int, policy_id: int, body: PolicyBody, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    _team(access, services, team_id)
    policy = services.policies.get(policy_id, team_id)
    _require_writer(access, team_id, "changing this team's policies")
    return await _modify(policy, body, user, services)


@router.delete("/teams/{team_id}/policies/{policy_id}")
async def delete_team_policy(
    team_id: int, policy_id: int, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    access = Access(user)
    _team(access, services, team_id)
    policy = services.policies.get(policy_id, team_id)
    _require_writer(access, team_id, "deleting this team's policies")
    return await _delete(policy, user, services)
