"""Live query campaigns: create, dispatch to hosts, ingest answers, totals, finish, expire.

A campaign resolves its targets to a host set when it is created; the hosts online then are
the ones it waits for. It is a query source of the distributed API: from memory, each host
is offered `fleet_distributed_query_<id>` on every check-in until its answer arrives, so a
reply lost to a timeout costs nothing and a host that answered is never asked twice. Hosts
offline at creation get the query when they come back, until the campaign's queue expiry
(their results say `queued`).

Every answer is stored as a `fleet:result` document (one per host per campaign, written in
group-committed batches by the index), so results stream through the change log like any
continuous query and survive the browser closing. The campaign itself is a `fleet:campaign`
document at `/fleet/campaigns/{id}`, written when its status changes.

The in-memory state follows the change log, not the requests: a campaign becomes active on
a node when its documents are committed, and a host stops being pending when its result
is. So on a cluster every node (seeing every change, in order) offers the query to the
hosts checking in on it, counts the same totals, and wakes its own held hosts when a
campaign created elsewhere arrives. Deadlines, queue expiry and purging are once-only
jobs: only the holder of the `campaigns` lease writes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from fleetwatch.bus.bus import Lease, LocalLease
from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.fleet.app_config import LIVE_QUERIES_DISABLED
from fleetwatch.fleet.errors import Conflict, Forbidden, Invalid, NotFound
from fleetwatch.fleet.hosts import HostService, HostState, iso
from fleetwatch.index import Action, Change, DocumentIndex, VersionConflict, Write
from fleetwatch.live.sql_check import check_live_sql
from fleetwatch.live.targets import LabelLookup, Targets, resolve_targets
from fleetwatch.osquery.distributed import DistributedResult
from fleetwatch.periodic import Periodic
from fleetwatch.storage.counters import next_id

log = logging.getLogger(__name__)

PREFIX = "fleet_distributed_query_"
CAMPAIGN_KIND = "fleet:campaign"
RESULT_KIND = "fleet:result"
TARGETS_KIND = "fleet:campaign-targets"
#: How often the sweeper checks deadlines (seconds).
SWEEP_INTERVAL = 0.25
#: How often old campaigns are purged (seconds).
PURGE_INTERVAL = 60.0
STATUSES = ("running", "finished", "stopped", "expired")


def campaign_link(campaign_id: int) -> str:
    return f"/fleet/campaigns/{campaign_id}"


def result_link(campaign_id: int, host_id: int) -> str:
    return f"/fleet/campaigns/{campaign_id}/results/{host_id}"


def targets_link(campaign_id: int) -> str:
    return f"/fleet/campaigns/{campaign_id}/targets"


@dataclass
class Campaign:
    """A campaign's state in memory (the source of truth while it is active)."""

    id: int
    query: str
    query_id: int | None
    user_id: int | None
    targets: Targets
    host_ids: frozenset[int]
    online_at_start: frozenset[int]
    created_at: float
    deadline: float
    expires_at: float
    status: str = "running"
    finished_at: float | None = None
    #: Targets that have not answered yet.
    pending: set[int] = field(default_factory=set)
    failed: int = 0
    rows: int = 0
    truncated: int = 0
    non_responders: list[int] = field(default_factory=list)
    #: Hosts whose result is committed (counted once, whichever node stored it).
    answered: set[int] = field(default_factory=set)

    @property
    def responded(self) -> int:
        """Targets whose answer is stored."""
        return len(self.answered)

    #: Version of the campaign document last seen: status writes are conditional on it, so
    #: two nodes finishing the same campaign at once write it once.
    doc_version: int | None = None

    #: len(pending & online_at_start), kept up to date by claim/unclaim: recomputing the
    #: intersection per result made a campaign's cost grow with the square of its hosts.
    _waiting: int | None = None

    @property
    def waiting_for(self) -> int:
        """Online-at-start targets that have not answered."""
        if self._waiting is None:
            self._waiting = len(self.pending & self.online_at_start)
        return self._waiting

    def claim(self, host_id: int) -> None:
        """The host's answer is being stored: it is no longer pending."""
        if host_id in self.pending:
            self.pending.discard(host_id)
            if self._waiting is not None and host_id in self.online_at_start:
                self._waiting -= 1

    def unclaim(self, host_id: int) -> None:
        """Storing the answer failed: the host is pending again (osquery will resend)."""
        if host_id not in self.pending:
            self.pending.add(host_id)
            if self._waiting is not None and host_id in self.online_at_start:
                self._waiting += 1

    def totals(self) -> dict[str, int]:
        return {
            "targeted": len(self.host_ids),
            "online": len(self.online_at_start),
            "offline": len(self.host_ids) - len(self.online_at_start),
            "responded": self.responded,
            "failed": self.failed,
            "pending": self.waiting_for,
            "queued": len(self.pending) - self.waiting_for,
            "rows": self.rows,
            "truncated": self.truncated,
        }

    def to_json(self) -> dict[str, Any]:
        """The campaign as the API shows it (and as its document stores it)."""
        body: dict[str, Any] = {
            "id": self.id,
            "query": self.query,
            "query_id": self.query_id,
            "user_id": self.user_id,
            "status": self.status,
            "targets": self.targets.to_json(),
            "totals": self.totals(),
            "created_at": iso(self.created_at),
            "deadline": iso(self.deadline),
            "expires_at": iso(self.expires_at),
            "finished_at": iso(self.finished_at),
        }
        if self.status != "running":
            body["non_responders"] = list(self.non_responders)
        return body


class CampaignService:
    """Runs live query campaigns; also the distributed query source for them."""

    prefix = PREFIX

    def __init__(
        self,
        settings: Settings,
        index: DocumentIndex,
        hosts: HostService,
        wakeups: HostWakeups,
        labels: LabelLookup | None = None,
        known_team: Callable[[int], bool] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.hosts = hosts
        self.wakeups = wakeups
        self.labels: LabelLookup = labels or (lambda _id: None)
        self.known_team: Callable[[int], bool] = known_team or (lambda _id: False)
        self._active: dict[int, Campaign] = {}
        #: host id -> ids of active campaigns still waiting for that host.
        self._by_host: dict[int, set[int]] = {}
        self._sweeper = Periodic(
            "fleetwatch-campaigns",
            self._sweep_step,
            SWEEP_INTERVAL,
            failure="campaign sweep failed",
        )
        self._last_purge = 0.0
        self._done: dict[int, asyncio.Event] = {}
        #: Who may write deadlines, expiry and purges (always this node when alone).
        self.lease: Lease = lease or LocalLease("campaigns")
        #: Target documents seen, waiting for their campaign document (same transaction).
        self._targets: dict[int, dict[str, Any]] = {}
        #: Campaigns this node is creating: it wakes their hosts itself, when it chooses.
        self._creating: set[int] = set()
        index.add_listener(self._on_changes)
        #: The kill switch; the app replaces it with the runtime setting (fleet.app_config).
        self.disabled: Callable[[], bool] = lambda: settings.live_queries_disabled

    # --- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Resume campaigns that were active when the server stopped."""
        from sqlalchemy import select

        from fleetwatch.index.store import document_from_row
        from fleetwatch.storage.schema import documents

        now = time.time()
        async with self.index.db.connect() as conn:
            rows = await conn.execute(
                select(documents).where(
                    documents.c.kind == CAMPAIGN_KIND, documents.c.deleted.is_(False)
                )
            )
            docs = [document_from_row(r._mapping) for r in rows]
        for doc in docs:
            body = doc.body
            expires = _epoch(body.get("expires_at"))
            if body.get("status") == "stopped" or expires <= now:
                continue
            if int(body["id"]) in self._active:
                continue  # already arrived through the change log
            targets_doc = await self.index.get(targets_link(int(body["id"])))
            if targets_doc is None:
                continue
            campaign = self._from_documents(body, targets_doc.body)
            campaign.doc_version = doc.version
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
            non_responders=list(body.get("non_responders") or []),
            pending=set(host_ids) if targets.get("queue_offline", True) else set(online),
        )

    def _count(self, campaign: Campaign, host_id: int, result: dict[str, Any]) -> bool:
        """Count a committed result once; True if it was new."""
        if host_id in campaign.answered:
            return False
        campaign.answered.add(host_id)
        campaign.claim(host_id)
        campaign.failed += 1 if result.get("status") == "error" else 0
        campaign.rows += len(result.get("rows") or ())
        campaign.truncated += 1 if result.get("truncated") else 0
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
        if self._count(campaign, int(body["host_id"]), body) and campaign.waiting_for == 0:
            event = self._done.get(campaign.id)
            if event is not None:
                event.set()

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
            campaign.non_responders = list(body.get("non_responders") or [])
            event = self._done.get(campaign_id)
            if event is not None:
                event.set()
            if status == "stopped":
                self._deactivate(campaign)

    def start(self) -> None:
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()

    # --- create, stop, read ------------------------------------------------------------

    async def create(
        self,
        sql: object,
        targets: Targets,
        *,
        user_id: int | None = None,
        query_id: int | None = None,
        timeout: float | None = None,
        queue_offline: bool = True,
        queue_expiry: float | None = None,
        may_target: Callable[[HostState], bool] | None = None,
        wake: bool = True,
    ) -> Campaign:
        """Validate, resolve the targets, store and start a campaign; wake its hosts.

        `may_target` limits the hosts to those the user may query; a host outside it is
        treated as unknown, so its id does not leak. With `wake=False` the caller wakes the
        held reads later (`wake_hosts`): a fleet-wide wake floods the index with results, and
        a write queued behind them (the API's audit record) would delay its response.
        """
        if self.disabled():
            raise Forbidden(LIVE_QUERIES_DISABLED)
        query = check_live_sql(sql)
        if targets.empty:
            raise Invalid(
                "no targets: give targets [{type: host|label|team|all, id}] or selected "
                "{hosts, labels, teams}"
            )
        allowed = may_target or (lambda _host: True)

        def known_host(host_id: int) -> bool:
            state = self.hosts.by_id(host_id)
            return state is not None and allowed(state)

        host_ids = {
            h
            for h in resolve_targets(
                targets, self.hosts.all(), known_host, self.labels, self.known_team
            )
            if known_host(h)
        }
        if not host_ids:
            raise Invalid("the targets select no hosts: no host is in those labels or teams")
        timeout = self.settings.live_query_timeout if timeout is None else timeout
        if not 0 < timeout <= 24 * 3600:
            raise Invalid("timeout must be between 0 and 86400 seconds")
        if queue_expiry is None:
            queue_expiry = self.settings.live_query_queue_expiry
        if queue_expiry < 0 or queue_expiry > 30 * 24 * 3600:
            raise Invalid("queue_expiry must be between 0 and 2592000 seconds (30 days)")
        now = time.time()
        online = frozenset(
            h
            for h in host_ids
            if (s := self.hosts.by_id(h)) and self.hosts.status(s, now) == "online"
        )
        expires = now + timeout
        if queue_offline:
            expires = max(expires, now + queue_expiry)
        campaign = Campaign(
            id=await next_id(self.index.db, "campaign"),
            query=query,
            query_id=query_id,
            user_id=user_id,
            targets=targets,
            host_ids=frozenset(host_ids),
            online_at_start=online,
            created_at=now,
            deadline=now + timeout,
            expires_at=expires,
            pending=set(host_ids) if queue_offline else set(online),
        )
        if not campaign.online_at_start:
            log.info(
                "campaign %s: no target is online; queued for %d hosts",
                campaign.id,
                len(campaign.pending),
            )
        self._creating.add(campaign.id)
        try:
            await self.index.apply(
                [
                    Write(
                        Action.PUT,
                        targets_link(campaign.id),
                        TARGETS_KIND,
                        {
                            "campaign_id": campaign.id,
                            "host_ids": sorted(campaign.host_ids),
                            "online_host_ids": sorted(campaign.online_at_start),
                            "queue_offline": queue_offline,
                        },
                    ),
                    Write(
                        Action.PUT, campaign_link(campaign.id), CAMPAIGN_KIND, campaign.to_json()
                    ),
                ]
            )
        finally:
            self._creating.discard(campaign.id)
        # Normally activated by the change listener during the commit; answers may even
        # have been counted already. If delivery failed, activate what we wrote.
        campaign = self._active.get(campaign.id) or campaign
        if campaign.id not in self._active:
            campaign.doc_version = 0
            self._activate(campaign)
        if campaign.status == "running" and campaign.waiting_for == 0:
            await self._finish(campaign, "finished", now)
        if wake:
            self.wake_hosts(campaign)
        return campaign

    def wake_hosts(self, campaign: Campaign) -> None:
        """Answer the held distributed/read requests of the campaign's pending hosts now."""
        self.wakeups.wake(campaign.pending)

    def _activate(self, campaign: Campaign) -> None:
        self._active[campaign.id] = campaign
        self._done.setdefault(campaign.id, asyncio.Event())
        if campaign.status != "running" and campaign.waiting_for == 0:
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

    async def wait(self, campaign_id: int, timeout: float) -> None:
        """Return when every online target answered (or the campaign ended), or at timeout."""
        event = self._done.get(campaign_id)
        if event is None:
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    async def host_results(self, campaign_id: int) -> list[dict[str, Any]]:
        """One entry per targeted host: its stored result, or pending / offline."""
        body = await self.get(campaign_id)
        targets_doc = await self.index.get(targets_link(campaign_id))
        host_ids = list(targets_doc.body["host_ids"]) if targets_doc else []
        online = set(targets_doc.body["online_host_ids"]) if targets_doc else set()
        stored = await self._stored_results(campaign_id)
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
                    "queued": host_id not in online,
                    "campaign_status": body["status"],
                }
            )
        return out

    async def _stored_results(self, campaign_id: int) -> dict[int, dict[str, Any]]:
        from sqlalchemy import select

        from fleetwatch.index.store import document_from_row
        from fleetwatch.storage.schema import documents

        prefix = result_link(campaign_id, 0)[:-1]
        async with self.index.db.connect() as conn:
            rows = await conn.execute(
                select(documents).where(
                    documents.c.self_link >= prefix,
                    documents.c.self_link < prefix + "\uffff",
                    documents.c.deleted.is_(False),
                )
            )
            out = {}
            for r in rows:
                body = result_view(document_from_row(r._mapping).body)
                out[int(body["host_id"])] = body
            return out

    # --- the distributed query source --------------------------------------------------

    def queries_for(self, host: HostState, now: float) -> dict[str, str]:
        ids = self._by_host.get(host.id)
        if not ids:
            return {}
        queries = {}
        for campaign_id in ids:
            campaign = self._active.get(campaign_id)
            if campaign is not None and campaign.status != "stopped" and now < campaign.expires_at:
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
            if claimed.status == "running" and claimed.waiting_for == 0:
                await self._finish(claimed, "finished", now)

    def _result_body(
        self, campaign: Campaign, host: HostState, result: DistributedResult
    ) -> dict[str, Any]:
        """The result document, with rows capped per host, per campaign and by size."""
        rows = result.rows if not result.failed else []
        room = min(
            self.settings.live_query_max_rows_per_host,
            max(0, self.settings.live_query_max_rows_per_campaign - campaign.rows),
        )
        kept: list[dict[str, str]] = []
        size = 0
        budget = self.settings.live_query_max_result_bytes
        for row in rows[:room]:
            size += len(orjson.dumps(row))
            if size > budget:
                break
            kept.append(row)
        truncated = len(kept) < len(rows)
        # The order the agent sent (JSONB on PostgreSQL does not keep key order).
        columns: list[str] = []
        for row in kept:
            columns.extend(k for k in row if k not in columns)
        body = {
            "campaign_id": campaign.id,
            "campaignLink": campaign_link(campaign.id),
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
            "stats": result.stats,
            "truncated": truncated,
            "queued": host.id not in campaign.online_at_start,
            "received_at": iso(time.time()),
        }
        return body

    # --- completion ----------------------------------------------------------------------

    async def _finish(self, campaign: Campaign, status: str, now: float) -> None:
        campaign.status = status
        campaign.finished_at = now
        campaign.non_responders = sorted(campaign.pending & campaign.online_at_start)
        await self._write_campaign(campaign)
        event = self._done.get(campaign.id)
        if event is not None:
            event.set()

    async def _write_campaign(self, campaign: Campaign) -> None:
        """Write the campaign document unless another node changed it since we last saw it
        (then its write, arriving through the change log, is the one that counts)."""
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
        from sqlalchemy import select

        from fleetwatch.storage.schema import documents

        cutoff = int((now - self.settings.live_query_result_retention) * 1_000_000)
        async with self.index.db.connect() as conn:
            rows = await conn.execute(
                select(documents.c.self_link).where(
                    documents.c.kind == CAMPAIGN_KIND,
                    documents.c.deleted.is_(False),
                    documents.c.update_time_micros < cutoff,
                )
            )
            old = [int(r[0].rsplit("/", 1)[1]) for r in rows]
        purged = 0
        for campaign_id in old:
            if campaign_id in self._active:
                continue
            prefix = campaign_link(campaign_id) + "/"
            async with self.index.db.connect() as conn:
                rows = await conn.execute(
                    select(documents.c.self_link).where(
                        documents.c.self_link >= prefix,
                        documents.c.self_link < prefix + "\uffff",
                        documents.c.deleted.is_(False),
                    )
                )
                links = [r[0] for r in rows]
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
                elif campaign.waiting_for == 0:
                    await self._finish(campaign, "finished", now)
            if now >= campaign.expires_at or campaign.status == "stopped":
                if owner and campaign.status in ("finished", "expired"):
                    # record the final totals (late and queued answers included)
                    await self._write_campaign(campaign)
                self._deactivate(campaign)
                self._done.pop(campaign.id, None)


def result_view(body: dict[str, Any]) -> dict[str, Any]:
    """A stored result as the API shows it (without the index's built-in fields)."""
    return {k: v for k, v in body.items() if not k.startswith("document")}


def _epoch(value: Any) -> float:
    import datetime as dt

    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
