"""Enrolled hosts: enrollment, node keys, check-in bookkeeping, inventory and status.

The check-in path never touches the database: node key to host is a dict lookup, and
`seen_time` is kept in memory and flushed in batches. Each host is mirrored in the document
index as `fleet:host` at `/fleet/hosts/{id}` (inventory, status, team, labels), so continuous
queries can watch hosts come, change, go offline and leave.

On a cluster every node keeps the same memory coherent (see `HostService.find`,
`_on_changes` and `refresh_seen`): a node key enrolled elsewhere is looked up once, the
`fleet:host` changes of the shared change log bring enrolments, deletions and transfers, and
other nodes' check-ins come from the hosts table. Status transitions are written by the
holder of the `host-status` lease only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.bus.bus import Bus, LocalBus
from fleetwatch.config import Settings
from fleetwatch.fleet.errors import Invalid, NotFound
from fleetwatch.fleet.group_commit import GroupCommit
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.periodic import Periodic
from fleetwatch.storage import Database
from fleetwatch.storage.schema import JsonDoc, hosts

log = logging.getLogger(__name__)

HOST_KIND = "fleet:host"
#: Fleet's rule: a host is online while seen_time + its check-in interval + 60 s is ahead.
ONLINE_BUFFER_S = 60.0
#: Inventory columns kept in the hosts table (besides the free-form `inventory` JSON).
INVENTORY_COLUMNS = (
    "hostname",
    "computer_name",
    "uuid",
    "platform",
    "platform_like",
    "os_name",
    "os_version",
    "osquery_version",
    "cpu_type",
    "cpu_brand",
    "cpu_logical_cores",
    "physical_memory",
    "hardware_vendor",
    "hardware_model",
    "hardware_serial",
)
_INT_COLUMNS = {"cpu_logical_cores", "physical_memory"}
MAX_PER_PAGE = 1000
#: Enrollments and inventory updates written per transaction, at most (see GroupCommit).
MAX_WRITE_BATCH = 250
#: Unknown node keys remembered after a database miss (a miss is final: see `find`).
MAX_UNKNOWN_KEYS = 10_000
#: Deleted host ids remembered against stale row reads (see `_upsert`).
MAX_DELETED_REMEMBERED = 100_000
#: Extra look-back of the seen-time refresh, beyond the flush interval (commit latency).
SEEN_REFRESH_MARGIN_S = 5.0


def hash_node_key(node_key: str) -> str:
    """Node keys are 256-bit random values; their SHA-256 is what we store and look up."""
    return hashlib.sha256(node_key.encode()).hexdigest()


def host_link(host_id: int) -> str:
    return f"/fleet/hosts/{host_id}"


def iso(ts: float | None) -> str | None:
    """An RFC 3339 UTC timestamp, as Fleet's API shows times."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class HostState:
    """What the check-in path needs to know about a host, kept in memory."""

    id: int
    node_key_hash: str
    host_identifier: str
    uuid: str
    hostname: str
    platform: str
    team_id: int | None
    enrolled_at: float
    seen_time: float | None
    detail_updated_at: float | None
    distributed_interval: int
    config_tls_refresh: int
    #: When detail queries are next due (0: now). Jittered so hosts spread out.
    detail_due_at: float = 0.0
    #: The status last written to the host's document, to report transitions once.
    reported_status: str = "offline"
    labels: list[dict[str, Any]] = field(default_factory=list)


class HostService:
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
        self._enrollments: GroupCommit[_Enrollment, HostState] = GroupCommit(
            self._enroll_batch, max_batch=MAX_WRITE_BATCH, name="fleetwatch-enroll"
        )
        self._inventories: GroupCommit[_Inventory, None] = GroupCommit(
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
                state = _state_from_row(m)
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

    async def find(self, node_key: str) -> HostState | None:
        """`by_node_key`, and on a cluster the hosts table when memory does not know the key
        (a host enrolled or re-enrolled on another node). No SQL for a known key; a key the
        table does not know is remembered as unknown (keys are random and only handed out
        after their commit, so a miss never turns into a hit)."""
        host = self.by_node_key(node_key)
        if host is not None or not node_key or not self.bus.clustered:
            return host
        key_hash = hash_node_key(node_key)
        if key_hash in self._unknown_keys:
            return None
        async with self.db.connect() as conn:
            row = (
                await conn.execute(select(hosts).where(hosts.c.node_key_hash == key_hash))
            ).first()
        state = self._upsert(row._mapping) if row is not None else None
        if state is None:
            self._unknown_keys[key_hash] = None
            while len(self._unknown_keys) > MAX_UNKNOWN_KEYS:
                self._unknown_keys.popitem(last=False)
        return state

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

        A host that enrolls again with the same host_identifier or hardware UUID keeps its id
        and gets a new node key; the old key stops working.
        """
        inventory = inventory_from_details(host_details, platform_type)
        node_key = secrets.token_urlsafe(32)
        request = _Enrollment(
            host_identifier=host_identifier,
            uuid=str(inventory.get("uuid") or ""),
            team_id=team_id,
            inventory=inventory,
            key_hash=hash_node_key(node_key),
        )
        state = await self._enrollments.submit(request)
        return state, node_key

    async def _enroll_batch(self, requests: Sequence[_Enrollment]) -> list[HostState]:
        """Enroll a batch: one transaction, then one index write of the hosts' documents."""
        now = time.time()
        rows: dict[int, Any] = {}
        async with self._lock, self.db.transaction() as conn:
            for part in _distinct_identities(requests):
                found = await self._enroll_part(conn, [requests[i] for i in part], now)
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
                hostname=str(request.inventory.get("hostname") or request.host_identifier),
                platform=str(request.inventory.get("platform") or ""),
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

    async def _enroll_part(
        self, conn: AsyncConnection, requests: Sequence[_Enrollment], now: float
    ) -> list[Any]:
        """Insert or update the rows of enrollments with distinct identities; their rows."""
        identifiers = sorted({r.host_identifier for r in requests})
        uuids = sorted({r.uuid for r in requests if r.uuid})
        match = [hosts.c.host_identifier.in_(identifiers)]
        if uuids:
            match.append(hosts.c.uuid.in_(uuids))
        by_identifier: dict[str, int] = {}
        by_uuid: dict[str, int] = {}
        for r in await conn.execute(
            select(hosts.c.id, hosts.c.host_identifier, hosts.c.uuid).where(or_(*match))
        ):
            by_identifier.setdefault(r.host_identifier, int(r.id))
            if r.uuid:
                by_uuid.setdefault(r.uuid, int(r.id))
        out: list[Any] = [None] * len(requests)
        inserts: list[tuple[int, dict[str, Any]]] = []
        for i, request in enumerate(requests):
            columns = {k: request.inventory[k] for k in INVENTORY_COLUMNS if k in request.inventory}
            host_id = by_identifier.get(request.host_identifier)
            if host_id is None and request.uuid:
                host_id = by_uuid.get(request.uuid)
            if host_id is not None:
                # A host enrolling again keeps its id; its old key stops working.
                result = await conn.execute(
                    update(hosts)
                    .where(hosts.c.id == host_id)
                    .values(
                        node_key_hash=request.key_hash,
                        host_identifier=request.host_identifier,
                        team_id=request.team_id,
                        seen_time=now,
                        detail_updated_at=None,
                        inventory=request.inventory,
                        **columns,
                    )
                    .returning(*hosts.c)
                )
                out[i] = result.one()._mapping
            else:
                inserts.append(
                    (
                        i,
                        {
                            "node_key_hash": request.key_hash,
                            "host_identifier": request.host_identifier,
                            "team_id": request.team_id,
                            "enrolled_at": now,
                            "seen_time": now,
                            "detail_updated_at": None,
                            "label_updated_at": None,
                            "distributed_interval": self.settings.distributed_interval,
                            "config_tls_refresh": 0,
                            "inventory": request.inventory,
                            **{k: columns.get(k, _COLUMN_DEFAULTS[k]) for k in INVENTORY_COLUMNS},
                        },
                    )
                )
        if inserts:
            result = await conn.execute(
                insert(hosts).returning(*hosts.c, sort_by_parameter_order=True),
                [values for _, values in inserts],
            )
            for (i, _), row in zip(inserts, result.all(), strict=True):
                out[i] = row._mapping
        return out

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
        await self._inventories.submit(_Inventory(host, dict(fields), now))

    async def _inventory_batch(self, updates: Sequence[_Inventory]) -> list[None]:
        """Inventory updates in one transaction (the JSON merged in SQL, the row returned
        for the document: no read back), then one index write."""
        changed: list[tuple[_Inventory, Any]] = []
        async with self.db.transaction() as conn:
            # Rows in id order, as the seen-time flush takes them (no lock-order deadlock).
            for item in sorted(updates, key=lambda u: u.host.id):
                columns: dict[str, Any] = {
                    key: _column_value(key, item.fields[key])
                    for key in INVENTORY_COLUMNS
                    if key in item.fields
                }
                if "distributed_interval" in item.fields:
                    columns["distributed_interval"] = _int(item.fields["distributed_interval"])
                result = await conn.execute(
                    update(hosts)
                    .where(hosts.c.id == item.host.id)
                    .values(
                        inventory=_merged(self.db.dialect, item.fields),
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
            seen: Any = bindparam("seen", type_=hosts.c.seen_time.type)
            # Never move seen_time back: another node may have written a later check-in.
            newer = case(
                (or_(hosts.c.seen_time.is_(None), hosts.c.seen_time < seen), seen),
                else_=hosts.c.seen_time,
            )
            try:
                async with self.db.transaction() as conn:
                    await conn.execute(
                        update(hosts).where(hosts.c.id == bindparam("hid")).values(seen_time=newer),
                        params,
                    )
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

    # --- cluster coherence -------------------------------------------------------------

    def _forget(self, host_id: int) -> None:
        state = self._by_id.pop(host_id, None)
        if state is not None:
            self._by_key.pop(state.node_key_hash, None)
        self._dirty_seen.discard(host_id)

    def _upsert(self, row: Any) -> HostState | None:
        """Bring memory in line with a hosts row read from the table (None if deleted)."""
        host_id = int(row["id"])
        if host_id in self._deleted:
            return None  # the row was read before a deletion this node already applied
        fresh = _state_from_row(row)
        state = self._by_id.get(host_id)
        if state is None:
            state = fresh
            state.detail_due_at = self._next_detail_due(state)
            state.reported_status = self.status(state)
            self._by_id[host_id] = state
            if self.on_loaded is not None:
                self.on_loaded(state)
        else:
            if state.node_key_hash != fresh.node_key_hash:
                # Re-enrolled elsewhere: the old key must stop working here too.
                self._by_key.pop(state.node_key_hash, None)
                state.node_key_hash = fresh.node_key_hash
            if fresh.detail_updated_at != state.detail_updated_at:
                state.detail_updated_at = fresh.detail_updated_at
                state.detail_due_at = self._next_detail_due(state)
            for name in (
                "host_identifier",
                "uuid",
                "hostname",
                "platform",
                "team_id",
                "distributed_interval",
                "config_tls_refresh",
            ):
                setattr(state, name, getattr(fresh, name))
            if fresh.seen_time is not None and (state.seen_time or 0.0) < fresh.seen_time:
                state.seen_time = fresh.seen_time
        self._by_key[state.node_key_hash] = state
        return state

    def _on_changes(self, batch: Sequence[Change]) -> None:
        """Follow `fleet:host` changes of every node (a cluster only)."""
        for change in batch:
            if change.kind != HOST_KIND or not change.self_link.startswith("/fleet/hosts/"):
                continue
            suffix = change.self_link.rsplit("/", 1)[1]
            if not suffix.isdigit():
                continue
            host_id = int(suffix)
            if change.action is Action.DELETE:
                self._deleted[host_id] = None
                # Only reads in flight at the deletion need the guard: keep the latest ones.
                while len(self._deleted) > MAX_DELETED_REMEMBERED:
                    self._deleted.popitem(last=False)
                self._forget(host_id)
            elif change.action is Action.PATCH and (state := self._by_id.get(host_id)):
                # Status transitions (from the lease holder) and label membership.
                status = change.body.get("status")
                if status in ("online", "offline"):
                    state.reported_status = status
                labels = change.body.get("labels")
                if isinstance(labels, list):
                    state.labels = labels
            elif not _is_current(self._by_id.get(host_id), change.body):
                # Enrolled, re-enrolled, inventory or team changed elsewhere: read the row.
                self._stale.add(host_id)
                self._stale_event.set()

    async def reload(self, host_ids: set[int]) -> None:
        """Re-read these hosts' rows; hosts whose row is gone are forgotten."""
        ids = sorted(host_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            async with self.db.connect() as conn:
                rows = {
                    int(r.id): r._mapping
                    for r in await conn.execute(select(hosts).where(hosts.c.id.in_(chunk)))
                }
            for host_id in chunk:
                row = rows.get(host_id)
                if row is None:
                    self._forget(host_id)
                else:
                    self._upsert(row)

    def _seen_lookback(self) -> float:
        # A check-in reaches the table up to one flush interval after it happened.
        return self.settings.seen_flush_interval + SEEN_REFRESH_MARGIN_S

    async def refresh_seen(self) -> int:
        """Take other nodes' check-ins from the hosts table: only rows whose seen_time moved
        since the last refresh. Returns how many hosts got a later seen_time."""
        started = time.time()
        async with self.db.connect() as conn:
            rows = list(
                await conn.execute(
                    select(hosts.c.id, hosts.c.seen_time, hosts.c.node_key_hash).where(
                        hosts.c.seen_time > self._seen_since
                    )
                )
            )
        moved = 0
        for row in rows:
            host_id, seen = int(row.id), float(row.seen_time)
            state = self._by_id.get(host_id)
            if state is None or state.node_key_hash != row.node_key_hash:
                # A host this node has not heard of yet, or re-enrolled elsewhere (that
                # change may not have arrived yet; once this seen_time is taken, it would
                # look like this node's own write): read the whole row.
                if host_id not in self._deleted:
                    self._stale.add(host_id)
            elif (state.seen_time or 0.0) < seen:
                state.seen_time = seen
                moved += 1
        self._seen_since = started - self._seen_lookback()
        return moved

    async def refresh(self, *, seen: bool = True) -> None:
        """One round of the cluster refresher: other nodes' check-ins (when `seen`), then
        the rows other nodes changed."""
        if seen:
            await self.refresh_seen()
        self._stale_event.clear()
        stale, self._stale = self._stale, set()
        if stale:
            try:
                await self.reload(stale)
            except Exception:
                self._stale |= stale  # retried next round
                raise

    async def _refresh_loop(self) -> None:
        # Every 5 flush intervals (10 s by default): online status has a 60 s buffer.
        period = self.settings.seen_flush_interval * 5
        next_seen = time.monotonic() + period
        while True:
            try:
                await asyncio.wait_for(
                    self._stale_event.wait(), max(0.0, next_seen - time.monotonic())
                )
            except TimeoutError:
                pass
            try:
                seen = time.monotonic() >= next_seen
                if seen:
                    next_seen = time.monotonic() + period
                await self.refresh(seen=seen)
            except Exception as exc:  # the database is unreachable: the next round retries
                log.warning("refreshing hosts from the table failed: %s", exc)
                await asyncio.sleep(min(period, 1.0))

    def _to_json(self, row: Any) -> dict[str, Any]:
        state = self._by_id.get(int(row["id"]))
        seen = state.seen_time if state is not None else row["seen_time"]
        inventory = dict(row["inventory"] or {})
        out: dict[str, Any] = {
            "id": int(row["id"]),
            "hostname": row["hostname"],
            "display_name": row["computer_name"] or row["hostname"],
            "uuid": row["uuid"],
            "platform": row["platform"],
            "status": self.status(state) if state is not None else "offline",
            "team_id": row["team_id"],
            "labels": list(state.labels) if state is not None else [],
            "seen_time": iso(seen),
            "enrolled_at": iso(row["enrolled_at"]),
            "detail_updated_at": iso(row["detail_updated_at"]),
            "host_identifier": row["host_identifier"],
        }
        for key in INVENTORY_COLUMNS:
            out.setdefault(key, row[key])
        out["memory"] = row["physical_memory"]
        for key in ("primary_ip", "primary_mac", "uptime", "kernel_version", "build"):
            if key in inventory:
                out[key] = inventory[key]
        out["inventory"] = inventory
        return out

    async def _index_host(self, host_id: int) -> None:
        body = await self.get(host_id)
        await self.index.write(Write(Action.PUT, host_link(host_id), HOST_KIND, body))


def _is_current(state: HostState | None, body: Mapping[str, Any]) -> bool:
    """Whether a host document shows exactly what memory holds: this node's own write
    (its times match to the microsecond), so there is no row to re-read. Any doubt (a
    re-enrolment elsewhere has another seen_time) answers False."""
    return (
        state is not None
        and body.get("seen_time") == iso(state.seen_time)
        and body.get("detail_updated_at") == iso(state.detail_updated_at)
        and body.get("team_id") == state.team_id
        and body.get("hostname") == state.hostname
        and body.get("host_identifier") == state.host_identifier
    )


def _state_from_row(m: Any) -> HostState:
    return HostState(
        id=int(m["id"]),
        node_key_hash=m["node_key_hash"],
        host_identifier=m["host_identifier"],
        uuid=m["uuid"],
        hostname=m["hostname"],
        platform=m["platform"],
        team_id=m["team_id"],
        enrolled_at=float(m["enrolled_at"]),
        seen_time=m["seen_time"],
        detail_updated_at=m["detail_updated_at"],
        distributed_interval=int(m["distributed_interval"]),
        config_tls_refresh=int(m["config_tls_refresh"]),
    )


@dataclass
class _Enrollment:
    host_identifier: str
    uuid: str
    team_id: int | None
    inventory: dict[str, Any]
    key_hash: str


@dataclass
class _Inventory:
    host: HostState
    fields: dict[str, Any]
    at: float


_COLUMN_DEFAULTS: dict[str, Any] = {k: 0 if k in _INT_COLUMNS else "" for k in INVENTORY_COLUMNS}


def _distinct_identities(requests: Sequence[_Enrollment]) -> list[list[int]]:
    """Split a batch (by position) into parts in which no two enrollments share a
    host_identifier or uuid, in order: a repeat is written after the first one's row."""
    parts: list[list[int]] = []
    seen: list[set[str]] = []
    for i, request in enumerate(requests):
        keys = {"i:" + request.host_identifier}
        if request.uuid:
            keys.add("u:" + request.uuid)
        # after the last part holding any of these keys
        at = max((n + 1 for n, used in enumerate(seen) if used & keys), default=0)
        if at == len(parts):
            parts.append([])
            seen.append(set())
        parts[at].append(i)
        seen[at] |= keys
    return parts


def _merged(dialect: str, fields: Mapping[str, Any]) -> Any:
    """The hosts.inventory JSON with `fields` merged over it (top level), in SQL."""
    value = bindparam(None, dict(fields), type_=JsonDoc)
    if dialect == "postgresql":
        return hosts.c.inventory.op("||", return_type=JsonDoc)(value)
    return func.json_patch(hosts.c.inventory, value, type_=JsonDoc)


def _int(value: Any) -> int:
    try:
        return int(str(value).strip() or 0)
    except ValueError:
        return 0


def _column_value(key: str, value: Any) -> Any:
    if key in _INT_COLUMNS:
        return _int(value)
    return str(value if value is not None else "")[:255]


#: platform_type bitmask (osquery): POSIX=1, WINDOWS=2, BSD=4, LINUX=8, OSX=16, FREEBSD=32.
def platform_from_mask(platform_type: str) -> str:
    mask = _int(platform_type)
    if mask & 0x10:
        return "darwin"
    if mask & 0x02:
        return "windows"
    if mask & 0x20:
        return "freebsd"
    if mask & 0x08:
        return "linux"
    return ""


def inventory_from_details(details: Mapping[str, Any], platform_type: str) -> dict[str, Any]:
    """Inventory fields from enroll `host_details` (every value a string, as osquery sends)."""

    def sub(name: str) -> Mapping[str, Any]:
        value = details.get(name)
        return value if isinstance(value, Mapping) else {}

    system = sub("system_info")
    os_version = sub("os_version")
    osquery = sub("osquery_info")
    platform = str(os_version.get("platform") or "") or platform_from_mask(platform_type)
    inventory: dict[str, Any] = {
        "hostname": str(system.get("hostname") or ""),
        "computer_name": str(system.get("computer_name") or ""),
        "uuid": str(system.get("uuid") or ""),
        "platform": platform,
        "platform_like": str(os_version.get("platform_like") or ""),
        "os_name": str(os_version.get("name") or ""),
        "os_version": os_version_string(os_version),
        "osquery_version": str(osquery.get("version") or ""),
        "cpu_type": str(system.get("cpu_type") or ""),
        "cpu_brand": str(system.get("cpu_brand") or ""),
        "cpu_logical_cores": _int(system.get("cpu_logical_cores")),
        "physical_memory": _int(system.get("physical_memory")),
        "hardware_vendor": str(system.get("hardware_vendor") or ""),
        "hardware_model": str(system.get("hardware_model") or ""),
        "hardware_serial": str(system.get("hardware_serial") or ""),
    }
    for key, value in inventory.items():
        if isinstance(value, str):
            inventory[key] = value[:255]
    return inventory


def os_version_string(os_version: Mapping[str, Any]) -> str:
    """'Ubuntu 22.04.4 LTS'-style name and version, as Fleet shows it."""
    name = str(os_version.get("name") or "")
    version = str(os_version.get("version") or "")
    if not version:
        parts = [str(os_version.get(k) or "") for k in ("major", "minor", "patch")]
        version = ".".join(p for p in parts if p)
    return f"{name} {version}".strip()
