"""A campaign's end: finishing when every online target answered, stopping, expiring at its
deadline, letting go at its queue expiry, and purging old campaigns. Deadlines, expiry and
purges are once-only jobs: only the holder of the `campaigns` lease writes them."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from fleetwatch.bus.bus import Lease
from fleetwatch.fleet.errors import Conflict
from fleetwatch.index import Action, VersionConflict, Write
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaign_docs import CAMPAIGN_KIND, campaign_link
from fleetwatch.live.campaign_log import CampaignLog
from fleetwatch.query.listing import Listing, read_fields

# The service's logger: its messages keep the name operators filter on.
log = logging.getLogger("fleetwatch.live.campaigns")

#: How often old campaigns are purged (seconds).
PURGE_INTERVAL = 60.0


class CampaignCompletion(CampaignLog):
    """The part of `CampaignService` that ends campaigns and purges old ones."""

    #: Who may write deadlines, expiry and purges (always this node when alone).
    lease: Lease
    _last_purge: float

    if TYPE_CHECKING:

        async def get(self, campaign_id: int) -> dict[str, Any]: ...

    async def stop_campaign(self, campaign_id: int) -> dict[str, Any]:
        """Stop a campaign: no host is asked any more; results so far are kept."""
        campaign = self._active.get(campaign_id)
        if campaign is None:
            body = await self.get(campaign_id)
            raise Conflict(f"campaign {campaign_id} is already {body['status']}")
        if campaign.status == "stopped":
            raise Conflict(f"campaign {campaign_id} is already stopped")
        await self._finish(campaign, "stopped", time.time())
        self._deactivate(campaign)
        return campaign.to_json()

    async def _finish(self, campaign: Campaign, status: str, now: float) -> None:
        campaign.status = status
        campaign.finished_at = now
        await self._write_campaign(campaign)
        event = self._done.get(campaign.id)
        if event is not None:
            event.set()

    async def _write_campaign(self, campaign: Campaign) -> None:
        """Write the campaign document unless another node changed it since we last saw it
        (then its write, arriving through the change log, is the one that counts)."""
        campaign.late_unwritten = False
        try:
            await self.index.write(
                Write(
                    Action.PUT,
                    campaign_link(campaign.id),
                    CAMPAIGN_KIND,
                    campaign.to_json(),
                    expected_version=campaign.doc_version,
                )
            )
        except VersionConflict:
            log.debug("campaign %s: written by another node meanwhile", campaign.id)

    async def _sweep_step(self) -> None:
        now = time.time()
        await self.sweep(now)
        if now - self._last_purge >= PURGE_INTERVAL and self.lease.held:
            self._last_purge = now
            await self.purge(now)

    async def purge(self, now: float) -> int:
        """Delete campaigns (and their results) untouched for the retention period."""
        cutoff = int((now - self.settings.live_query_result_retention) * 1_000_000)
        untouched = Listing(kind=CAMPAIGN_KIND, updated_before=cutoff)
        old = [
            int(link.rsplit("/", 1)[1])
            for link, _ in await read_fields(self.index.db, untouched, ())
        ]
        purged = 0
        for campaign_id in old:
            if campaign_id in self._active:
                continue
            under = Listing(link_prefix=campaign_link(campaign_id) + "/")
            links = [link for link, _ in await read_fields(self.index.db, under, ())]
            writes = [Write(Action.DELETE, link) for link in links]
            writes.append(Write(Action.DELETE, campaign_link(campaign_id)))
            await self.index.apply(writes)
            purged += 1
        return purged

    async def sweep(self, now: float) -> None:
        """Expire campaigns past their deadline; drop those past their queue expiry.

        Every node lets go of what is over; only the lease holder writes the statuses (and
        finishes a campaign whose finishing node died between the last result and its write).
        """
        owner = self.lease.held
        for campaign in list(self._active.values()):
            if campaign.status == "running" and owner:
                if now >= campaign.deadline:
                    await self._finish(campaign, "expired", now)
                elif campaign.unanswered == 0:
                    await self._finish(campaign, "finished", now)
            elif campaign.late_unwritten and owner:
                # late answers shrank non_responders: the document (and so the stream) says
                # so, in one write per sweep however many arrived
                await self._write_campaign(campaign)
            # A settled campaign (every answer in) is let go of now rather than at its queue
            # expiry: a campaign every 15 s on 3,000 hosts kept 0.5 MiB each for a day.
            if now >= campaign.expires_at or campaign.status == "stopped" or campaign.settled:
                if owner and campaign.status in ("finished", "expired"):
                    # record the final totals (late and queued answers included)
                    await self._write_campaign(campaign)
                self._deactivate(campaign)
                self._done.pop(campaign.id, None)
