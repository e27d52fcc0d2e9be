"""Enrolled hosts: enrollment, node keys, check-in bookkeeping, inventory and status.

The check-in path never touches the database: node key to host is a dict lookup, and
`seen_time` is kept in memory and flushed in batches. Each host is mirrored in the document
index as `fleet:host` at `/fleet/hosts/{id}` (inventory, status, team, labels), so continuous
queries can watch hosts come, change, go offline and leave.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from fleetwatch.config import Settings
from fleetwatch.fleet.errors import Invalid, NotFound
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.storage import Database
from fleetwatch.storage.schema import hosts

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

    def __init__(self, db: Database, index: DocumentIndex, settings: Settings) -> None:
        self.db = db
        self.index = index
        self.settings = settings
        self._by_key: dict[str, HostState] = {}
        self._by_id: dict[int, HostState] = {}
        self._dirty_seen: set[int] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Load every host's check-in state into memory."""
        async with self.db.connect() as conn:
            rows = await conn.execute(select(hosts))
            for r in rows:
                m = r._mapping
                state = HostState(
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
                state.detail_due_at = self._next_detail_due(state)
                state.reported_status = self.status(state)
                self._by_key[state.node_key_hash] = state
                self._by_id[state.id] = state

    def start(self) -> None:
        """Start the background flusher of seen times and status transitions."""
        self._flusher = asyncio.create_task(self._flush_loop(), name="fleetwatch-seen-flusher")

    async def stop(self) -> None:
        """Stop the flusher and write what it had not written yet."""
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None
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

        A host that enrolls again with the same host_identifier or hardware UUID keeps its id
        and gets a new node key; the old key stops working.
        """
        inventory = inventory_from_details(host_details, platform_type)
        node_key = secrets.token_urlsafe(32)
        key_hash = hash_node_key(node_key)
        now = time.time()
        uuid = str(inventory.get("uuid") or "")
        async with self._lock, self.db.transaction() as conn:
            match = [hosts.c.host_identifier == host_identifier]
            if uuid:
                match.append(hosts.c.uuid == uuid)
            existing = (
                await conn.execute(select(hosts.c.id, hosts.c.node_key_hash).where(or_(*match)))
            ).first()
            columns = {k: inventory[k] for k in INVENTORY_COLUMNS if k in inventory}
            if existing is not None:
                host_id = int(existing.id)
                old_hash = existing.node_key_hash
                await conn.execute(
                    update(hosts)
                    .where(hosts.c.id == host_id)
                    .values(
                        node_key_hash=key_hash,
                        host_identifier=host_identifier,
                        team_id=team_id,
                        seen_time=now,
                        detail_updated_at=None,
                        inventory=inventory,
                        **columns,
                    )
                )
                self._by_key.pop(old_hash, None)
            else:
                result = await conn.execute(
                    insert(hosts).returning(hosts.c.id),
                    [
                        {
                            "node_key_hash": key_hash,
                            "host_identifier": host_identifier,
                            "team_id": team_id,
                            "enrolled_at": now,
                            "seen_time": now,
                            "detail_updated_at": None,
                            "distributed_interval": self.settings.distributed_interval,
                            "config_tls_refresh": 0,
                            "inventory": inventory,
                            **columns,
                        }
                    ],
                )
                host_id = int(result.scalar_one())
        prior = self._by_id.get(host_id)
        state = HostState(
            id=host_id,
            node_key_hash=key_hash,
            host_identifier=host_identifier,
            uuid=uuid,
            hostname=str(inventory.get("hostname") or host_identifier),
            platform=str(inventory.get("platform") or ""),
            team_id=team_id,
            enrolled_at=prior.enrolled_at if prior else now,
            seen_time=now,
            detail_updated_at=None,
            distributed_interval=self.settings.distributed_interval,
            config_tls_refresh=0,
            detail_due_at=0.0,
            reported_status="online",
            labels=prior.labels if prior else [],
        )
        self._by_key[key_hash] = state
        self._by_id[host_id] = state
        await self._index_host(host_id)
        return state, node_key

    # --- inventory ---------------------------------------------------------------------

    async def apply_inventory(self, host: HostState, fields: Mapping[str, Any]) -> None:
        """Store inventory refreshed by detail queries and mark details up to date."""
        now = time.time()
        host.detail_updated_at = now
        host.detail_due_at = self._next_detail_due(host)
        columns: dict[str, Any] = {}
        for key in INVENTORY_COLUMNS:
            if key in fields:
                columns[key] = _column_value(key, fields[key])
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(select(hosts.c.inventory).where(hosts.c.id == host.id))
            ).first()
            if row is None:  # deleted while its results were in flight
                return
            inventory = dict(row.inventory or {})
            inventory.update(fields)
            if "distributed_interval" in fields:
                columns["distributed_interval"] = _int(fields["distributed_interval"])
            await conn.execute(
                update(hosts)
                .where(hosts.c.id == host.id)
                .values(inventory=inventory, detail_updated_at=now, **columns)
            )
        if "hostname" in columns:
            host.hostname = str(columns["hostname"])
        if "platform" in columns:
            host.platform = str(columns["platform"])
        if "distributed_interval" in columns and columns["distributed_interval"]:
            host.distributed_interval = int(columns["distributed_interval"])
        await self._index_host(host.id)

    # --- batched writes ----------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.seen_flush_interval)
            try:
                await self.flush()
            except Exception:  # keep flushing; the next round retries the same hosts
                log.exception("flushing seen times failed")

    async def flush(self) -> None:
        """Write pending seen times in one batch and report online/offline transitions."""
        dirty, self._dirty_seen = self._dirty_seen, set()
        params = [
            {"hid": h.id, "seen": h.seen_time}
            for hid in dirty
            if (h := self._by_id.get(hid)) is not None
        ]
        if params:
            from sqlalchemy import bindparam

            try:
                async with self.db.transaction() as conn:
                    await conn.execute(
                        update(hosts)
                        .where(hosts.c.id == bindparam("hid"))
                        .values(seen_time=bindparam("seen")),
                        params,
                    )
            except Exception:
                self._dirty_seen |= dirty  # nothing is lost: retried next round
                raise
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
        state = self._by_id.pop(host_id, None)
        if state is not None:
            self._by_key.pop(state.node_key_hash, None)
        self._dirty_seen.discard(host_id)
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
        await self.index.apply(
            [Write(Action.PATCH, host_link(h), body={"team_id": team_id}) for h in host_ids]
        )

    def forget_team(self, team_id: int) -> tuple[int, ...]:
        """After a team is deleted: its hosts have no team (the database cascades)."""
        moved = tuple(h.id for h in self._by_id.values() if h.team_id == team_id)
        for host_id in moved:
            self._by_id[host_id].team_id = None
        return moved

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
