"""Cluster coherence of the hosts held in memory (unused on a single node).

Every node keeps the same memory: a node key enrolled elsewhere is looked up once (see
`HostCoherence.find`), the `fleet:host` changes of the shared change log bring enrolments,
deletions and transfers, and other nodes' check-ins come from the hosts table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from fleetwatch.bus.bus import Bus
from fleetwatch.config import Settings
from fleetwatch.fleet.host_state import (
    HOST_KIND,
    HostState,
    hash_node_key,
    is_current,
    state_from_row,
)
from fleetwatch.index import Action, Change
from fleetwatch.storage import Database
from fleetwatch.storage.schema import hosts

# The service's logger: its messages keep the name operators filter on.
log = logging.getLogger("fleetwatch.fleet.hosts")

#: Unknown node keys remembered after a database miss (a miss is final: see `find`).
MAX_UNKNOWN_KEYS = 10_000
#: Deleted host ids remembered against stale row reads (see `_upsert`).
MAX_DELETED_REMEMBERED = 100_000
#: Extra look-back of the seen-time refresh, beyond the flush interval (commit latency).
SEEN_REFRESH_MARGIN_S = 5.0


class HostCoherence:
    """The part of `HostService` that looks up keys enrolled elsewhere and follows other
    nodes' changes to hosts."""

    db: Database
    bus: Bus
    settings: Settings
    on_loaded: Callable[[HostState], None] | None
    _by_key: dict[str, HostState]
    _by_id: dict[int, HostState]
    _dirty_seen: set[int]
    _unknown_keys: OrderedDict[str, None]
    #: Hosts deleted (ids are never reused), so a stale row read cannot bring one back.
    _deleted: OrderedDict[int, None]
    #: Hosts whose row changed on another node, reloaded by the refresher.
    _stale: set[int]
    _stale_event: asyncio.Event
    _seen_since: float

    if TYPE_CHECKING:

        def by_node_key(self, node_key: str) -> HostState | None: ...

        def status(self, host: HostState, now: float | None = None) -> str: ...

        def _next_detail_due(self, host: HostState) -> float: ...

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
        fresh = state_from_row(row)
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
            elif not is_current(self._by_id.get(host_id), change.body):
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
