"""What follows a campaign: re-run it on some of its hosts, compare it with another run.

Both see campaigns as `GET /api/v1/fleet/campaigns/{id}` does: a user's own, or any for a
global admin; any other is 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.api.live_queries import _campaign, _may_target, _number
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.errors import NotFound
from fleetwatch.live.campaign_limits import limit_value
from fleetwatch.live.diff import diff
from fleetwatch.live.rerun import parse_subset, rerun
from fleetwatch.live.result_scope import ResultScope
from fleetwatch.services import Services

router = APIRouter(prefix="/api/v1/fleet", tags=["live queries"])


async def _observer_can_run(services: Services, campaign: dict[str, Any]) -> bool:
    """Whether the campaign ran a saved query marked observer_can_run, still unchanged."""
    query_id = campaign.get("query_id")
    if query_id is None:
        return False
    try:
        saved = await services.saved_queries.get(int(query_id))
    except NotFound:
        return False
    return bool(saved["observer_can_run"]) and saved["query"] == campaign["query"]


@router.post("/campaigns/{campaign_id}/rerun", status_code=201)
async def rerun_campaign(
    campaign_id: int,
    user: CurrentUser,
    services: ServicesDep,
    body: Annotated[dict[str, Any], Body(examples=[{"hosts": "non_responders"}])],
) -> dict[str, Any]:
    """A new campaign with the same SQL over a subset of this one's targets: `hosts` is
    `non_responders` (no answer), `failed` (an error answer), `all`, or `remaining` (the
    targets a sampled campaign left out). `timeout`, `queue_offline`, `queue_expiry`,
    `max_rows`, `max_bytes` and `destinations` as on a run (the destinations, and the limits,
    are the original's unless given). 409 while the campaign is still running; 400 when the
    subset has no host."""
    original = await _campaign(user, services, campaign_id)
    subset = parse_subset(body.get("hosts"))
    limits = original.get("limits") or {}
    max_rows = limit_value(body, "max_rows") or limits.get("max_rows")
    max_bytes = limit_value(body, "max_bytes") or limits.get("max_bytes")
    role = "observer" if await _observer_can_run(services, original) else "maintainer"
    may_target = _may_target(Access(user), role)
    queue_offline = body.get("queue_offline", True)
    if not isinstance(queue_offline, bool):
        raise ApiError(400, "queue_offline must be true or false")
    campaign = await rerun(
        services.campaigns,
        campaign_id,
        subset,
        user_id=user.id,
        may_target=may_target,
        timeout=_number(body, "timeout", None),
        queue_offline=queue_offline,
        queue_expiry=_number(body, "queue_expiry", None),
        destinations=body.get("destinations", original.get("destinations") or None),
        max_rows=max_rows,
        max_bytes=max_bytes,
    )
    try:
        await services.activities.record(
            "live_query",
            user,
            {
                "campaign_id": campaign.id,
                "query": campaign.query,
                "query_id": campaign.query_id,
                "rerun_of": campaign_id,
                "hosts": subset,
                "targets_count": len(campaign.host_ids),
                "online_count": len(campaign.online_at_start),
            },
        )
    finally:
        services.campaigns.wake_hosts(campaign)
    return {"campaign_id": campaign.id, "campaign": campaign.to_json()}


@router.get("/campaigns/{campaign_id}/diff")
async def diff_campaigns(
    campaign_id: int,
    user: CurrentUser,
    services: ServicesDep,
    against: int = Query(..., description="The campaign to compare with (same SQL)."),
) -> dict[str, Any]:
    """Per host that answered both and whose rows differ, the rows of this campaign not in
    `against` (`added`) and the reverse (`removed`), rows compared whole; and the hosts that
    answered only one (`only_in_campaign`, `only_in_other`). Different SQL is 400."""
    campaign = await _campaign(user, services, campaign_id)
    other = await _campaign(user, services, against)
    scope = ResultScope.of(Access(user))  # a team-only user: their teams' hosts
    return await diff(services.campaigns.index, campaign, other, scope)
