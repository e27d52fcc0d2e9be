"""Reading campaigns: the active ones from memory, a finished one from its document, and a
campaign with its results per host from one snapshot of the store."""

from __future__ import annotations

import asyncio
from typing import Any

from fleetwatch.fleet.errors import NotFound
from fleetwatch.index.document import KIND, SELF_LINK
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaign_docs import RESULT_KIND, campaign_link, result_view, targets_link
from fleetwatch.live.campaign_log import CampaignLog
from fleetwatch.query.listing import Listing, read_page
from fleetwatch.query.scope import term
from fleetwatch.query.snapshot import snapshot


class CampaignReads(CampaignLog):
    """The part of `CampaignService` that answers reads of campaigns and their results."""

    def list_active(self) -> list[dict[str, Any]]:
        """Active campaigns (running, or still queued for offline hosts), newest first."""
        return [c.to_json() for c in sorted(self._active.values(), key=lambda c: -c.id)]

    def active(self, campaign_id: int) -> Campaign | None:
        return self._active.get(campaign_id)

    async def get(self, campaign_id: int) -> dict[str, Any]:
        """The campaign as the API shows it: live totals if active, else its document."""
        campaign = self._active.get(campaign_id)
        if campaign is not None:
            return campaign.to_json()
        doc = await self.index.get(campaign_link(campaign_id))
        if doc is None:
            raise NotFound(f"no campaign with id {campaign_id}")
        return {k: v for k, v in doc.body.items() if not k.startswith("document")}

    async def wait(self, campaign_id: int, timeout: float) -> None:
        """Return when the campaign's end is committed (every online target's answer is,
        before it), or at timeout. Read what it returned with `read`, in one snapshot."""
        event = self._done.get(campaign_id)
        if event is None:
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    async def host_results(self, campaign_id: int) -> list[dict[str, Any]]:
        """One entry per targeted host: its stored result, or pending / offline."""
        _, results = await self.read(campaign_id)
        return results

    async def read(self, campaign_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The campaign and its results per targeted host, from one snapshot of the store:
        status, totals and results describe the same instant (the totals are counted from
        the results read, not taken from the live counters, which run ahead of them)."""
        db = self.index.db
        own = Listing(where=term(SELF_LINK, campaign_link(campaign_id)))
        under = Listing(link_prefix=campaign_link(campaign_id) + "/")
        async with snapshot(db) as (conn, _seq):
            docs = (await read_page(db, own, conn=conn)).documents
            docs += (await read_page(db, under, conn=conn)).documents
        by_link = dict(docs)
        doc = by_link.get(campaign_link(campaign_id))
        if doc is None:
            raise NotFound(f"no campaign with id {campaign_id}")
        body = result_view(doc)
        targets = by_link.get(targets_link(campaign_id), {})
        stored: dict[int, dict[str, Any]] = {}
        for _link, found in docs:
            if found.get(KIND) == RESULT_KIND:
                view = result_view(found)
                stored[int(view["host_id"])] = view
        results = self._per_host(campaign_id, body, targets, stored)
        body["totals"] = _totals(targets, stored)
        return body, results

    def _per_host(
        self,
        campaign_id: int,
        body: dict[str, Any],
        targets: dict[str, Any],
        stored: dict[int, dict[str, Any]],
    ) -> list[dict[str, Any]]:
        host_ids = list(targets.get("host_ids") or [])
        online = set(targets.get("online_host_ids") or [])
        out = []
        for host_id in host_ids:
            if host_id in stored:
                out.append(stored[host_id])
                continue
            state = self.hosts.by_id(host_id)
            out.append(
                {
                    "campaign_id": campaign_id,
                    "host_id": host_id,
                    "hostname": state.hostname if state else "",
                    "status": "pending" if host_id in online else "offline",
                    "error": None,
                    "rows": [],
                    "columns": [],
                    "rows_count": 0,
                    "stats": {},
                    "truncated": False,
                    "truncated_reason": None,
                    "queued": host_id not in online,
                    "campaign_status": body["status"],
                }
            )
        return out


def _totals(targets: dict[str, Any], stored: dict[int, dict[str, Any]]) -> dict[str, int]:
    """A campaign's totals as its stored results make them (see `Campaign.totals`)."""
    host_ids = {int(h) for h in targets.get("host_ids") or ()}
    online = {int(h) for h in targets.get("online_host_ids") or ()}
    waiting = len(online - stored.keys())
    expected = host_ids if targets.get("queue_offline", True) else online
    return {
        "targeted": len(host_ids),
        "online": len(online),
        "offline": len(host_ids) - len(online),
        "responded": len(stored),
        "failed": sum(1 for r in stored.values() if r.get("status") == "error"),
        "pending": waiting,
        "queued": len(expected - stored.keys()) - waiting,
        "rows": sum(len(r.get("rows") or ()) for r in stored.values()),
        "truncated": sum(1 for r in stored.values() if r.get("truncated")),
    }
