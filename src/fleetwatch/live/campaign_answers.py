"""A campaign as a query source of the distributed API: the queries a host is offered, and
its answers stored once each, capped per host, per campaign and by the campaign's limits."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.host_state import HostState, iso
from fleetwatch.index import Action, Change, Write
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaign_cost import result_stats
from fleetwatch.live.campaign_docs import (
    CREATOR,
    PREFIX,
    RESULT_KIND,
    TRUNCATED_BYTES,
    TRUNCATED_CAMPAIGN,
    TRUNCATED_ROWS_PER_HOST,
    campaign_link,
    result_link,
)
from fleetwatch.live.campaign_limits import TRUNCATED_MAX_BYTES, TRUNCATED_MAX_ROWS
from fleetwatch.live.campaign_log import CampaignLog


class CampaignAnswers(CampaignLog):
    """The part of `CampaignService` that offers campaigns to hosts and stores answers."""

    if TYPE_CHECKING:

        async def _finish(self, campaign: Campaign, status: str, now: float) -> None: ...

        async def _write_campaign(self, campaign: Campaign) -> None: ...

    def queries_for(self, host: HostState, now: float) -> dict[str, str]:
        ids = self._by_host.get(host.id)
        if not ids:
            return {}
        queries = {}
        for campaign_id in ids:
            campaign = self._active.get(campaign_id)
            if (
                campaign is not None
                and campaign.status != "stopped"
                and now < campaign.expires_at
                and campaign.limit_reached is None  # past its limits nobody is asked
            ):
                queries[f"{PREFIX}{campaign_id}"] = campaign.query
        return queries

    async def ingest(self, host: HostState, results: list[DistributedResult]) -> None:
        """Store each answer once; answers for unknown campaigns or repeats are ignored."""
        writes: list[Write] = []
        taken: list[Campaign] = []
        for result in results:
            suffix = result.name[len(PREFIX) :]
            if not suffix.isdigit():
                continue
            campaign = self._active.get(int(suffix))
            if campaign is None or host.id not in campaign.pending:
                continue  # never sent, already answered, or the campaign is over
            campaign.claim(host.id)  # claimed now: a concurrent resend is ignored
            body = self._result_body(campaign, host, result)
            # Created once: a copy stored by another node at the same moment is skipped.
            writes.append(
                Write(
                    Action.POST,
                    result_link(campaign.id, host.id),
                    RESULT_KIND,
                    body,
                    if_absent=True,
                )
            )
            taken.append(campaign)
        if not writes:
            return
        try:
            outcomes = await self.index.apply(writes)
        except BaseException:
            for claimed in taken:
                claimed.unclaim(host.id)  # osquery retries the write; nothing is lost
            raise
        now = time.time()
        for claimed, outcome in zip(taken, outcomes, strict=True):
            if isinstance(outcome, Exception):
                claimed.unclaim(host.id)
                raise outcome
            if isinstance(outcome, Change):
                # Counted by the change listener; count it here if delivery failed.
                self._count(claimed, host.id, outcome.body)
            if claimed.limit_reached is not None and not claimed.limit_written:
                # the campaign document (and so its stream) says it stopped asking
                claimed.limit_written = True
                await self._write_campaign(claimed)
            if claimed.status == "running" and claimed.unanswered == 0:
                await self._finish(claimed, "finished", now)

    def _result_body(
        self, campaign: Campaign, host: HostState, result: DistributedResult
    ) -> dict[str, Any]:
        """The result document, with rows capped per host, per campaign and by size, and
        by the campaign's limits (live/campaign_limits.py)."""
        rows = result.rows if not result.failed else []
        per_host = self.settings.live_query_max_rows_per_host
        campaign_room = max(0, self.settings.live_query_max_rows_per_campaign - campaign.rows)
        limits = campaign.limits or self._default_limits()
        limit_room = max(0, limits.max_rows - campaign.rows)
        budget = self.settings.live_query_max_result_bytes
        limit_budget = max(0, limits.max_bytes - campaign.stored_bytes)
        if campaign.limit_reached is not None:
            limit_room = 0  # reached: later answers are counted, their rows not stored
        room = min(per_host, campaign_room, limit_room)
        kept: list[dict[str, str]] = []
        size = 0
        reason: str | None = None
        for row in rows[:room]:
            row_size = len(orjson.dumps(row))
            if size + row_size > min(budget, limit_budget):
                reason = TRUNCATED_BYTES if budget <= limit_budget else TRUNCATED_MAX_BYTES
                break
            size += row_size
            kept.append(row)
        if reason is None and len(rows) > room:
            if limit_room == room:
                reason = campaign.limit_reached or TRUNCATED_MAX_ROWS
            elif per_host <= campaign_room:
                reason = TRUNCATED_ROWS_PER_HOST
            else:
                reason = TRUNCATED_CAMPAIGN
        truncated = len(kept) < len(rows)
        # The order the agent sent (JSONB on PostgreSQL does not keep key order).
        columns: list[str] = []
        for row in kept:
            columns.extend(k for k in row if k not in columns)
        body = {
            "campaign_id": campaign.id,
            "campaignLink": campaign_link(campaign.id),
            # who may read it: continuous queries scope results by it (fleetwatch.live.scope)
            CREATOR: campaign.user_id,
            "host_id": host.id,
            "hostname": host.hostname,
            # the host's team when it answered: what team users' continuous queries see
            "team_id": host.team_id,
            "status": "error" if result.failed else "complete",
            "error": (result.message or f"osquery status {result.status}")
            if result.failed
            else None,
            "rows": kept,
            "columns": columns,
            "rows_count": len(rows),
            "stats": result_stats(result.stats),
            # bytes of the rows kept, counted against the campaign's max_bytes
            "bytes": size,
            "truncated": truncated,
            "truncated_reason": reason,
            "queued": host.id not in campaign.online_at_start,
            # a host it waited for, answering after it expired (it leaves non_responders)
            "late": campaign.status != "running" and host.id in campaign.online_at_start,
            "received_at": iso(time.time()),
        }
        if campaign.destinations:
            # each destination follows the change log for the results that name it
            body["destinations"] = list(campaign.destinations)
        return body
