"""Re-runs: a new campaign with a finished campaign's SQL over a subset of its targets.

The subsets (`"hosts"` of POST /api/v1/fleet/campaigns/{id}/rerun):

- `non_responders`: targets with no stored answer (online at the start or queued offline);
- `failed`: targets that answered with an error;
- `all`: every target;
- `remaining`: the targets a sampled (canary) campaign left out (fleetwatch.live.sample).

Targets deleted since, or that the user may no longer query, are left out. The subset is
read from the campaign's stored targets and results, so a re-run works on any node and
after a restart. The new campaign shows `"rerun_of": id`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetwatch.fleet.errors import Conflict, Invalid, NotFound
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.targets import Targets
from fleetwatch.index import DocumentIndex
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaign_docs import result_link, targets_link
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.query.listing import Listing, read_fields

SUBSETS = ("non_responders", "failed", "all", "remaining")

#: What each subset is, to say which one came out empty.
_DESCRIBED = {
    "non_responders": "targets that did not answer",
    "failed": "targets that answered with an error",
    "all": "targets",
    "remaining": "targets its sample left out",
}


def parse_subset(value: Any) -> str:
    """The `hosts` of a re-run request; Invalid names the accepted values."""
    if value not in SUBSETS:
        raise Invalid(f'hosts must be one of {", ".join(SUBSETS)}: send {{"hosts": "failed"}}')
    return str(value)


async def answer_statuses(index: DocumentIndex, campaign_id: int) -> dict[int, str]:
    """Each answering host's result status (complete or error), without reading rows."""
    prefix = result_link(campaign_id, 0)[:-1]
    rows = await read_fields(index.db, Listing(link_prefix=prefix), ("status",))
    return {int(link.rsplit("/", 1)[1]): str(fields["status"]) for link, fields in rows}


async def subset_hosts(index: DocumentIndex, campaign: dict[str, Any], subset: str) -> list[int]:
    """The ids of the campaign's targets in `subset`, sorted."""
    campaign_id = int(campaign["id"])
    doc = await index.get(targets_link(campaign_id))
    if doc is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    targets = doc.body
    host_ids = [int(h) for h in targets.get("host_ids") or ()]
    if subset == "all":
        return sorted(host_ids)
    if subset == "remaining":
        if not campaign.get("sample"):
            raise Invalid(
                f"campaign {campaign_id} was not a sample, so no targets remain: re-run it "
                'with "hosts": "all", "non_responders" or "failed"'
            )
        return sorted(int(h) for h in targets.get("sample_left_out") or ())
    answers = await answer_statuses(index, campaign_id)
    if subset == "failed":
        return sorted(h for h in host_ids if answers.get(h) == "error")
    return sorted(h for h in host_ids if h not in answers)


async def rerun(
    campaigns: CampaignService,
    campaign_id: int,
    subset: str,
    *,
    user_id: int | None,
    may_target: Callable[[HostState], bool],
    timeout: float | None = None,
    queue_offline: bool = True,
    queue_expiry: float | None = None,
    destinations: object = None,
    max_rows: int | None = None,
    max_bytes: int | None = None,
) -> Campaign:
    """Start the re-run (not woken: the caller wakes its hosts, see `CampaignService.create`).

    Conflict while the campaign is still running (its non-responders are not known yet);
    Invalid when the subset holds no host the user may query.
    """
    original = await campaigns.get(campaign_id)
    if original["status"] == "running":
        raise Conflict(
            f"campaign {campaign_id} is still running: wait for it to finish (or stop it: "
            f"POST /api/v1/fleet/campaigns/{campaign_id}/stop), then re-run it"
        )
    chosen = await subset_hosts(campaigns.index, original, subset)
    usable = [h for h in chosen if (state := campaigns.hosts.by_id(h)) and may_target(state)]
    if not usable:
        gone = f" ({len(chosen)} no longer exist or are not yours to query)" if chosen else ""
        raise Invalid(
            f"campaign {campaign_id} has no {_DESCRIBED[subset]}{gone}: zero hosts to re-run "
            f"on; choose other hosts ({', '.join(s for s in SUBSETS if s != subset)})"
        )
    return await campaigns.create(
        original["query"],
        Targets(hosts=frozenset(usable)),
        user_id=user_id,
        query_id=original.get("query_id"),
        timeout=timeout,
        queue_offline=queue_offline,
        queue_expiry=queue_expiry,
        may_target=may_target,
        wake=False,
        rerun_of=campaign_id,
        destinations=destinations,
        max_rows=max_rows,
        max_bytes=max_bytes,
    )
