"""Enrolled hosts: the service holding them in memory, node keys, check-in bookkeeping,
status, the seen-time flush and the reads of the user API.

The check-in path never touches the database: node key to host is a dict lookup, and
`seen_time` is kept in memory and flushed in batches. Each host is mirrored in the document
index as `fleet:host` at `/fleet/hosts/{id}` (inventory, status, team, labels), so continuous
queries can watch hosts come, change, go offline and leave.

On a cluster every node keeps the same memory coherent (see `HostService.find` and
`fleetwatch.fleet.host_coherence`). Status transitions are written by the holder of the
`host-status` lease only. The host's state model is in `host_state`, its inventory columns
in `host_inventory`, the rows an enrollment writes in `host_enrollment`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from fleetwatch.bus.bus import Bus, LocalBus
from fleetwatch.config import Settings
from fleetwatch.fleet.errors import Invalid, NotFound
from fleetwatch.fleet.group_commit import GroupCommit
from fleetwatch.fleet.host_coherence import HostCoherence
from fleetwatch.fleet.host_enrollment import Enrollment, distinct_identities, write_enrollments
from fleetwatch.fleet.host_inventory import (
    INVENTORY_COLUMNS,
    InventoryUpdate,
    column_value,
    host_document,
    int_value,
    inventory_from_details,
    merged_inventory,
)
from fleetwatch.fleet.host_seen import write_seen_times
from fleetwatch.fleet.host_state import (
    HOST_KIND,
    ONLINE_BUFFER_S,
    HostState,
    hash_node_key,
    host_link,
    iso,
    state_from_row,
)
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.periodic import Periodic
from fleetwatch.storage import Database
from fleetwatch.storage.schema import hosts

log = logging.getLogger(__name__)

#: Enrollments and inventory updates written per transaction, at most (see GroupCommit).
MAX_WRITE_BATCH = 250
MAX_PER_PAGE = 1000


class HostService(HostCoherence):
    """Enrolls hosts and answers everything about them."""

    def __init__(
        self, db: Database, index: DocumentIndex, settings: Settings, bus: Bus | None = None
    ) -> None:
        self.db = db
        self.index = index
        self.settings = settings
        self.bus: Bus = bus if bus is not None else LocalBus()
        #: Only its holder writes online/offline transitions (always held on one node).
        self.status_lease = self.bus.lease("host-status")
        #: Called with a host loaded from the table on a cluster (labels fill its labels).
        self.on_loaded: Callable[[HostState], None] | None = None
        self._by_key: dict[str, HostState] = {}
        self._by_id: dict[int, HostState] = {}
        self._dirty_seen: set[int] = set()
        self._flusher = Periodic(
            "fleetwatch-seen-flusher",
            self.flush,
            settings.seen_flush_interval,
            failure="flushing seen times failed; the next round retries the same hosts",
        )
        self._refresher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # Enrollments and detail-query inventory arrive in bursts (a fleet starting, a
        # refresh wave): each burst is written in one transaction and one index write.
        self._enrollments: GroupCommit[Enrollment, HostState] = GroupCommit(
            self._enroll_batch, max_batch=MAX_WRITE_BATCH, name="fleetwatch-enroll"
        )
        self._inventories: GroupCommit[InventoryUpdate, None] = GroupCommit(
            self._inventory_batch, max_batch=MAX_WRITE_BATCH, name="fleetwatch-inventory"
        )
        # --- cluster coherence (unused on a single node) ---
        self._unknown_keys: OrderedDict[str, None] = OrderedDict()
        #: Hosts deleted (ids are never reused), so a stale row read cannot bring one back.
        self._deleted: OrderedDict[int, None] = OrderedDict()
        #: Hosts whose row changed on another node, reloaded by the refresher.
        self._stale: set[int] = set()
        self._stale_event = asyncio.Event()
        self._seen_since = 0.0

    # --- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Load every host's check-in state into memory."""
        if self.bus.clustered:
            # Follow other nodes' enrolments, deletions and transfers from now on.
            self.index.add_listener(self._on_changes)
            self._seen_since = time.time() - self._seen_lookback()
        async with self.db.connect() as conn:
            rows = await conn.execute(select(hosts))
            for r in rows:
                m = r._mapping
                state = state_from_row(m)
                state.detail_due_at = self._next_detail_due(state)
                state.reported_status = self.status(state)
                self._by_key[state.node_key_hash] = state
                self._by_id[state.id] = state

    def start(self) -> None:
        """Start the background flusher of seen times and status transitions (and, on a
        cluster, the refresher of what other nodes changed)."""
        self._flusher.start()
        if self.bus.clustered:
            self._refresher = asyncio.create_task(
                self._refresh_loop(), name="fleetwatch-host-refresher"
            )

    async def stop(self) -> None:
        """Stop the flusher and write what it had not written yet."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self._flusher.stop()
        await self.flush()

    # --- the check-in path (no I/O) ------------------------------------------------------

    def by_node_key(self, node_key: str) -> HostState | None:
        """The host owning this node key, or None (unknown, revoked or deleted)."""
        if not node_key:
            return None
        return self._by_key.get(hash_node_key(node_key))

    def by_id(self, host_id: int) -> HostState | None:
        return self._by_id.get(host_id)

    def all(self) -> list[HostState]:
        return list(self._by_id.values())

    def mark_seen(self, host: HostState, now: float | None = None) -> None:
        """Record a check-in in memory; the flusher writes it in a batch."""
        host.seen_time = now if now is not None else time.time()
        self._dirty_seen.add(host.id)

    def checkin_interval(self, host: HostState) -> float:
        """Seconds between two check-ins of this host: hold + distributed_interval."""
        interval = host.distributed_interval or self.settings.distributed_interval
        if host.config_tls_refresh:
            interval = min(interval, host.config_tls_refresh)
        return interval + self.settings.distributed_hold

    def status(self, host: HostState, now: float | None = None) -> str:
        """`online` or `offline`, by Fleet's rule (interval plus 60 s)."""
        if host.seen_time is None:
            return "offline"
        now = now if now is not None else time.time()
        online = host.seen_time + self.checkin_interval(host) + ONLINE_BUFFER_S > now
        return "online" if online else "offline"

    def detail_due(self, host: HostState, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= host.detail_due_at

    def _next_detail_due(self, host: HostState) -> float:
        if host.detail_updated_at is None:
            return 0.0
        jitter = secrets.randbelow(1000) / 10000.0  # up to 10 %, as Fleet
        return host.detail_updated_at + self.settings.detail_interval * (1.0 + jitter)

    # --- enrollment --------------------------------------------------------------------

    async def enroll(
        self,
        host_identifier: str,
        platform_type: str,
        host_details: Mapping[str, Any],
        team_id: int | None,
    ) -> tuple[HostState, str]:
        """Enroll a host (or re-enroll a known one) and return it with its new node key.

        A host that enrolls again with the same host_identifier or hardware UUID, with a
        secret of its own team (or a global one when it has no team), keeps its id and gets a
        new node key; the old key stops working. A re-enroll never changes a host's team: with
        another team's secret, the same identifier or UUID becomes a new host of that team,
        and the existing host, its node key and its logs stay as they were (so a team's
        secret cannot take over, lock out or read another team's host; moving a host is
        `POST /api/v1/fleet/hosts/transfer`).
        """
        inventory = inventory_from_details(host_details, platform_type)
        node_key = secrets.token_urlsafe(32)
        request = Enrollment(
            host_identifier=host_identifier,
            uuid=str(inventory.get("uuid") or ""),
            team_id=team_id,
            inventory=inventory,
            key_hash=hash_node_key(node_key),
        )
        state = await self._enrollments.submit(request)
        return state, node_key

    async def _enroll_batch(self, requests: Sequence[Enrollment]) -> list[HostState]:
        """Enroll a batch: one transaction, then one index write of the hosts' documents."""
        now = time.time()
        rows: dict[int, Any] = {}
        async with self._lock, self.db.transaction() as conn:
            for part in distinct_identities(requests):
                found = await write_enrollments(
                    conn,
                    [requests[i] for i in part],
                    now,
                    self.settings.distributed_interval,
                )
                rows.update(zip(part, found, strict=True))
        states: list[HostState] = []
        writes: list[Write] = []
        for i, request in enumerate(requests):
            row = rows[i]
            host_id = int(row["id"])
            prior = self._by_id.get(host_id)
            if prior is not None:
                self._by_key.pop(prior.node_key_hash, None)
            state = HostState(
                id=host_id,
                node_key_hash=request.key_hash,
                host_identifier=request.host_identifier,
                uuid=request.uuid,
                hostname=str(row["hostname"] or request.host_identifier),
                platform=str(row["platform"] or ""),
                team_id=request.team_id,
                enrolled_at=prior.enrolled_at if prior else float(row["enrolled_at"]),
                seen_time=now,
                detail_updated_at=None,
                distributed_interval=self.settings.distributed_interval,
                config_tls_refresh=0,
                detail_due_at=0.0,
                reported_status="online",
                labels=prior.labels if prior else [],
            )
            self._by_key[request.key_hash] = state
            self._by_id[host_id] = state
            states.append(state)
            # The document is built from the row the statement returned: no read back.
            writes.append(Write(Action.PUT, host_link(host_id), HOST_KIND, self._to_json(row)))
        await self._mirror(writes)
        return states

    async def _mirror(self, writes: Sequence[Write]) -> None:
        for outcome in await self.index.apply(writes):
            if isinstance(outcome, Exception):
                log.warning("host document not written: %s", outcome)

    # --- inventory ---------------------------------------------------------------------

    async def apply_inventory(self, host: HostState, fields: Mapping[str, Any]) -> None:
        """Store inventory refreshed by detail queries and mark details up to date."""
        now = time.time()
        host.detail_updated_at = now
        host.detail_due_at = self._next_detail_due(host)
        await self._inventories.submit(InventoryUpdate(host, dict(fields), now))

    async def _inventory_batch(self, updates: Sequence[InventoryUpdate]) -> list[None]:
        """Inventory updates in one transaction (the JSON merged in SQL, the row returned
        for the document: no read back), then one index write."""
        changed: list[tuple[InventoryUpdate, Any]] = []
        async with self.db.transaction() as conn:
            # Rows in id order, as the seen-time flush takes them (no lock-order deadlock).
            for item in sorted(updates, key=lambda u: u.host.id):
                columns: dict[str, Any] = {
                    key: column_value(key, item.fields[key])
                    for key in INVENTORY_COLUMNS
                    if key in item.fields
                }
                if "distributed_interval" in item.fields:
                    columns["distributed_interval"] = int_value(item.fields["distributed_interval"])
                result = await conn.execute(
                    update(hosts)
                    .where(hosts.c.id == item.host.id)
                    .values(
                        inventory=merged_inventory(self.db.dialect, item.fields),
                        detail_updated_at=item.at,
                        **columns,
                    )
                    .returning(*hosts.c)
                )
                row = result.first()
                if row is not None:  # else deleted while its results were in flight
                    changed.append((item, row._mapping))
        writes = []
        for item, row in changed:
            host = item.host
            host.hostname = str(row["hostname"])
            host.platform = str(row["platform"])
            if "distributed_interval" in item.fields and row["distributed_interval"]:
                host.distributed_interval = int(row["distributed_interval"])
            writes.append(Write(Action.PUT, host_link(host.id), HOST_KIND, self._to_json(row)))
        if writes:
            await self._mirror(writes)
        return [None] * len(updates)

    # --- batched writes ----------------------------------------------------------------

    async def flush(self) -> None:
        """Write pending seen times in one batch and report online/offline transitions."""
        dirty, self._dirty_seen = self._dirty_seen, set()
        # In id order: every node then locks the rows it updates in the same order, so two
        # nodes flushing the same hosts wait for each other instead of deadlocking.
        params = [
            {"hid": h.id, "seen": h.seen_time}
            for hid in sorted(dirty)
            if (h := self._by_id.get(hid)) is not None
        ]
        if params:
            try:
                await write_seen_times(self.db, params)
            except BaseException:
                self._dirty_seen |= dirty  # nothing is lost: retried next round
                raise
        if not self.status_lease.held:
            return  # another node writes the transitions; its documents update ours
        now = time.time()
        writes = []
        for host in list(self._by_id.values()):
            status = self.status(host, now)
            if status != host.reported_status:
                host.reported_status = status
                writes.append(
                    Write(
                        Action.PATCH,
                        host_link(host.id),
                        body={"status": status, "seen_time": iso(host.seen_time)},
                    )
                )
        if writes:
            await self.index.apply(writes)

    # --- reads for the user API --------------------------------------------------------

    async def list(
        self,
        *,
        status: str | None = None,
        platform: str | None = None,
        team_id: int | None = None,
        query: str | None = None,
        host_ids: set[int] | None = None,
        page: int = 0,
        per_page: int = 100,
        order_key: str = "id",
        descending: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of hosts matching the filters, and how many match in all."""
        if per_page < 1 or per_page > MAX_PER_PAGE:
            raise Invalid(f"per_page must be between 1 and {MAX_PER_PAGE}")
        if page < 0:
            raise Invalid("page starts at 0")
        conds = []
        if platform:
            conds.append(or_(hosts.c.platform == platform, hosts.c.platform_like == platform))
        if team_id is not None:
            conds.append(hosts.c.team_id == team_id if team_id else hosts.c.team_id.is_(None))
        if host_ids is not None:
            conds.append(hosts.c.id.in_(sorted(host_ids)))
        if query:
            pattern = (
                "%"
                + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            conds.append(
                or_(
                    *(
                        func.lower(c).like(pattern, escape="\\")
                        for c in (
                            hosts.c.hostname,
                            hosts.c.computer_name,
                            hosts.c.uuid,
                            hosts.c.hardware_serial,
                            hosts.c.host_identifier,
                        )
                    )
                )
            )
        if status is not None:
            if status not in ("online", "offline"):
                raise Invalid("status must be online or offline")
            ids = {h.id for h in self._by_id.values() if self.status(h) == status}
            conds.append(hosts.c.id.in_(sorted(ids)))
        where = and_(*conds) if conds else None
        sortable = {
            "id": hosts.c.id,
            "hostname": hosts.c.hostname,
            "platform": hosts.c.platform,
            "os_version": hosts.c.os_version,
            "osquery_version": hosts.c.osquery_version,
            "seen_time": hosts.c.seen_time,
            "enrolled_at": hosts.c.enrolled_at,
        }
        if order_key not in sortable:
            raise Invalid(f"order_key must be one of {', '.join(sortable)}")
        column = sortable[order_key]
        order = [column.desc() if descending else column.asc(), hosts.c.id.asc()]
        async with self.db.connect() as conn:
            count_q = select(func.count()).select_from(hosts)
            rows_q = select(hosts).order_by(*order).limit(per_page).offset(page * per_page)
            if where is not None:
                count_q = count_q.where(where)
                rows_q = rows_q.where(where)
            total = int((await conn.execute(count_q)).scalar_one())
            rows = [r._mapping for r in await conn.execute(rows_q)]
        return [self._to_json(r) for r in rows], total

    async def get(self, host_id: int) -> dict[str, Any]:
        """One host as the API shows it."""
        async with self.db.connect() as conn:
            row = (await conn.execute(select(hosts).where(hosts.c.id == host_id))).first()
        if row is None:
            raise NotFound(f"no host with id {host_id}")
        return self._to_json(row._mapping)

    async def delete(self, host_id: int) -> None:
        """Forget a host: its node key gets node_invalid from now on (it may re-enroll)."""
        async with self._lock, self.db.transaction() as conn:
            result = await conn.execute(delete(hosts).where(hosts.c.id == host_id))
        if result.rowcount == 0:
            raise NotFound(f"no host with id {host_id}")
        self._forget(host_id)
        if await self.index.get(host_link(host_id)) is not None:
            await self.index.write(Write(Action.DELETE, host_link(host_id)))

    async def transfer(self, host_ids: Sequence[int], team_id: int | None) -> None:
        """Move hosts to a team (None: no team)."""
        missing = [h for h in host_ids if h not in self._by_id]
        if missing:
            raise NotFound(f"no host with id {missing[0]}")
        if not host_ids:
            return
        async with self.db.transaction() as conn:
            await conn.execute(
                update(hosts).where(hosts.c.id.in_(host_ids)).values(team_id=team_id)
            )
        for host_id in host_ids:
            self._by_id[host_id].team_id = team_id
        # Whole documents: a PATCH cannot set team_id to null (PATCH skips nulls), and a PUT
        # is what other nodes reload a host's row on.
        async with self.db.connect() as conn:
            rows = [
                r._mapping
                for r in await conn.execute(select(hosts).where(hosts.c.id.in_(host_ids)))
            ]
        await self.index.apply(
            [Write(Action.PUT, host_link(int(r["id"])), HOST_KIND, self._to_json(r)) for r in rows]
        )

    def forget_team(self, team_id: int) -> tuple[int, ...]:
        """After a team is deleted: its hosts have no team (the database cascades)."""
        moved = tuple(h.id for h in self._by_id.values() if h.team_id == team_id)
        for host_id in moved:
            self._by_id[host_id].team_id = None
        return moved

    def _to_json(self, row: Any) -> dict[str, Any]:
        state = self._by_id.get(int(row["id"]))
        return host_document(row, state, self.status(state) if state is not None else "offline")

    async def _index_host(self, host_id: int) -> None:
        body = await self.get(host_id)
        await self.index.write(Write(Action.PUT, host_link(host_id), HOST_KIND, body))
