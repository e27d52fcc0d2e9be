"""The documents of a live query campaign: their kinds and links, and what a stored result
shows (a campaign at `/fleet/campaigns/{id}`, its resolved targets at `.../targets`, one
result per host at `.../results/{host_id}`)."""

from __future__ import annotations

from typing import Any

PREFIX = "fleet_distributed_query_"
CAMPAIGN_KIND = "fleet:campaign"
RESULT_KIND = "fleet:result"
TARGETS_KIND = "fleet:campaign-targets"
#: The field of a result naming the user who started its campaign (who may read it).
CREATOR = "campaign_user_id"
#: How often the sweeper checks deadlines (seconds).
SWEEP_INTERVAL = 0.25
#: How often old campaigns are purged (seconds).
PURGE_INTERVAL = 60.0
STATUSES = ("running", "finished", "stopped", "expired")
#: A result's `truncated_reason`: the cap that dropped rows (None when nothing was dropped).
#: Rows per host (live_query_max_rows_per_host).
TRUNCATED_ROWS_PER_HOST = "rows_per_host"
#: Bytes of row data per host result, i.e. per write (live_query_max_result_bytes).
TRUNCATED_BYTES = "result_bytes"
#: Rows per campaign over all hosts (live_query_max_rows_per_campaign).
TRUNCATED_CAMPAIGN = "rows_per_campaign"


def campaign_link(campaign_id: int) -> str:
    return f"/fleet/campaigns/{campaign_id}"


def result_link(campaign_id: int, host_id: int) -> str:
    return f"/fleet/campaigns/{campaign_id}/results/{host_id}"


def targets_link(campaign_id: int) -> str:
    return f"/fleet/campaigns/{campaign_id}/targets"


def result_view(body: dict[str, Any]) -> dict[str, Any]:
    """A stored result as the API shows it (without the index's built-in fields)."""
    return {k: v for k, v in body.items() if not k.startswith("document")}
