"""Following the change log: a campaign becomes active on a node when its documents are
committed and a host stops being pending when its result is; resuming at start-up.

Every node sees every change in order, so each keeps the same campaigns, per-host pending
sets and totals (see `fleetwatch.live.campaigns`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.targets import Targets
from fleetwatch.index import Action, Change, DocumentIndex
from fleetwatch.index.document import VERSION
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaign_docs import (
    CAMPAIGN_KIND,
    RESULT_KIND,
    TARGETS_KIND,
    result_link,
    result_view,
    targets_link,
)
from fleetwatch.live.campaign_limits import (
    TRUNCATED_MAX_BYTES,
    TRUNCATED_MAX_ROWS,
    CampaignLimits,
    limits_from_document,
)
from fleetwatch.query.listing import Listing, read_page


class CampaignLog:
    """The part of `CampaignService` that keeps the active campaigns as the change log
    describes them, and resumes them at start-up."""

    settings: Settings
    index: DocumentIndex
    hosts: HostService
    wakeups: HostWakeups
    _active: dict[int, Campaign]
    #: host id -> ids of active campaigns still waiting for that host.
    _by_host: dict[int, set[int]]
    _done: dict[int, asyncio.Event]
    #: Target documents seen, waiting for their campaign document (same transaction).
    _targets: dict[int, dict[str, Any]]
    #: Campaigns this node is creating: it wakes their hosts itself, when it chooses.
    _creating: set[int]

    if TYPE_CHECKING:

        def wake_hosts(self, campaign: Campaign) -> None: ...

    # --- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Resume campaigns that were active when the server stopped."""
        now = time.time()
        found = await read_page(self.index.db, Listing(kind=CAMPAIGN_KIND))
        for body in found.bodies:
            expires = _epoch(body.get("expires_at"))
            if body.get("status") == "stopped" or expires <= now:
                continue
            if int(body["id"]) in self._active:
                continue  # already arrived through the change log
            targets_doc = await self.index.get(targets_link(int(body["id"])))
            if targets_doc is None:
                continue
            campaign = self._from_documents(body, targets_doc.body)
            campaign.doc_version = int(body[VERSION])
            stored = await self._stored_results(campaign.id)
            for host_id, result in stored.items():
                campaign.pending.discard(host_id)
                self._count(campaign, host_id, result)
            campaign._waiting = None  # recounted from the restored pending set
            self._activate(campaign)

    def _from_documents(self, body: dict[str, Any], targets: dict[str, Any]) -> Campaign:
        """A campaign as its two documents describe it, nobody answered yet."""
        host_ids = frozenset(int(h) for h in targets["host_ids"])
        online = frozenset(int(h) for h in targets["online_host_ids"])
        return Campaign(
            id=int(body["id"]),
            query=str(body["query"]),
            query_id=body.get("query_id"),
            user_id=body.get("user_id"),
            targets=Targets(
                frozenset(body["targets"]["hosts"]),
                frozenset(body["targets"]["labels"]),
                frozenset(body["targets"]["teams"]),
                bool(body["targets"]["all"]),
            ),
            host_ids=host_ids,
            online_at_start=online,
            created_at=_epoch(body.get("created_at")),
            deadline=_epoch(body.get("deadline")),
            expires_at=_epoch(body.get("expires_at")),
            status=str(body["status"]),
            finished_at=_epoch(body["finished_at"]) if body.get("finished_at") else None,
            pending=set(host_ids) if targets.get("queue_offline", True) else set(online),
            rerun_of=body.get("rerun_of"),
            sample=body.get("sample"),
            queue_offline=bool(targets.get("queue_offline", True)),
            limits=limits_from_document(body, self._default_limits()),
            destinations=tuple(body.get("destinations") or ()),
        )

    def _default_limits(self) -> CampaignLimits:
        return CampaignLimits(self.settings.campaign_max_rows, self.settings.campaign_max_bytes)

    def _count(self, campaign: Campaign, host_id: int, result: dict[str, Any]) -> bool:
        """Count a committed result once; True if it was new."""
        if host_id in campaign.answered:
            return False
        campaign.answered.add(host_id)
        campaign.answered_online += host_id in campaign.online_at_start
        campaign.claim(host_id)
        campaign.failed += 1 if result.get("status") == "error" else 0
        campaign.rows += len(result.get("rows") or ())
        campaign.truncated += 1 if result.get("truncated") else 0
        campaign.stored_bytes += int(result.get("bytes") or 0)
        campaign.cost.add(result.get("stats"))
        if campaign.limit_reached is None and campaign.limits is not None:
            reason = result.get("truncated_reason")
            campaign.limit_reached = (
                reason
                if reason in (TRUNCATED_MAX_ROWS, TRUNCATED_MAX_BYTES)
                else campaign.limits.reached(campaign.rows, campaign.stored_bytes)
            )
        if result.get("late"):
            campaign.late += 1
            campaign.late_unwritten = True
        ids = self._by_host.get(host_id)
        if ids is not None:
            ids.discard(campaign.id)
            if not ids:
                del self._by_host[host_id]
        return True

    # --- following the change log ------------------------------------------------------

    def _on_changes(self, batch: Sequence[Change]) -> None:
        for change in batch:
            if change.kind == RESULT_KIND:
                self._on_result(change)
            elif change.kind == TARGETS_KIND:
                if change.action is not Action.DELETE:
                    self._targets[int(change.body["campaign_id"])] = change.body
            elif change.kind == CAMPAIGN_KIND:
                self._on_campaign(change)

    def _on_result(self, change: Change) -> None:
        if change.action is Action.DELETE:
            return
        body = change.body
        campaign = self._active.get(int(body.get("campaign_id", 0)))
        if campaign is None:
            return
        # The campaign is done once its finished status is committed (after this result):
        # `wait` then reads results, totals and status that agree.
        self._count(campaign, int(body["host_id"]), body)

    def _on_campaign(self, change: Change) -> None:
        body = change.body
        campaign_id = int(body["id"])
        campaign = self._active.get(campaign_id)
        if change.action is Action.DELETE:
            self._targets.pop(campaign_id, None)
            if campaign is not None:
                self._deactivate(campaign)
                self._done.pop(campaign_id, None)
            return
        if campaign is None:
            targets = self._targets.pop(campaign_id, None)
            status = body.get("status")
            if targets is None or status == "stopped":
                return  # a later write of a campaign this node has let go of
            if _epoch(body.get("expires_at")) <= time.time():
                return
            campaign = self._from_documents(body, targets)
            campaign.doc_version = change.version
            self._activate(campaign)
            if campaign_id not in self._creating:
                self.wake_hosts(campaign)  # created on another node: wake our held hosts
            return
        campaign.doc_version = change.version
        status = str(body.get("status"))
        if status != campaign.status:
            campaign.status = status
            campaign.finished_at = (
                _epoch(body["finished_at"]) if body.get("finished_at") else time.time()
            )
            event = self._done.get(campaign_id)
            if event is not None:
                event.set()
            if status == "stopped":
                self._deactivate(campaign)

    def _activate(self, campaign: Campaign) -> None:
        self._active[campaign.id] = campaign
        self._done.setdefault(campaign.id, asyncio.Event())
        if campaign.status != "running":
            self._done[campaign.id].set()
        for host_id in campaign.pending:
            self._by_host.setdefault(host_id, set()).add(campaign.id)

    def _deactivate(self, campaign: Campaign) -> None:
        self._active.pop(campaign.id, None)
        for host_id in campaign.pending:
            ids = self._by_host.get(host_id)
            if ids is not None:
                ids.discard(campaign.id)
                if not ids:
                    del self._by_host[host_id]

    async def _stored_results(self, campaign_id: int) -> dict[int, dict[str, Any]]:
        prefix = result_link(campaign_id, 0)[:-1]
        found = await read_page(self.index.db, Listing(link_prefix=prefix))
        out = {}
        for stored in found.bodies:
            body = result_view(stored)
            out[int(body["host_id"])] = body
        return out


def _epoch(value: Any) -> float:
    import datetime as dt

    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
