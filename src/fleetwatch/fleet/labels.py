"""Labels: dynamic (a query each host runs; a member when it returns a row), manual (an
explicit host list) and built-in (All Hosts and one per platform family).

Membership is kept in memory for targeting and the check-in path, stored in
`label_membership`, and shown on each host and its `fleet:host` document, so a continuous
query can watch a label's members change. A label query that fails on a host leaves that
host's membership as it was: unknown is not false.

What a label is (its record, the built-in ones, platform families) is in
`label_definitions`; the label queries hosts are sent and their answers in `label_queries`.

On a cluster each node follows the change log: `fleet:label` documents carry the
definitions and the `labels` field of `fleet:host` documents the membership, whichever
node wrote them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update

from fleetwatch.config import Settings
from fleetwatch.fleet.errors import Conflict, Invalid, NotFound
from fleetwatch.fleet.host_state import HOST_KIND, HostState, host_link, iso
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.label_definitions import (
    ALL_HOSTS,
    BUILTIN_LABELS,
    LABEL_KIND,
    PLATFORMS,
    Label,
    label_from_document,
    label_from_row,
)
from fleetwatch.fleet.label_queries import DUE_CHANNEL, LabelQueries
from fleetwatch.fleet.targets import LabelInfo
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.sql_check import InvalidSql, check_live_sql_off_loop
from fleetwatch.storage import Database
from fleetwatch.storage.schema import label_membership, labels

log = logging.getLogger(__name__)


class LabelService(LabelQueries):
    """Label CRUD, label queries for hosts (see `LabelQueries`), and membership."""

    def __init__(
        self, db: Database, index: DocumentIndex, hosts: HostService, settings: Settings
    ) -> None:
        self.db = db
        self.index = index
        self.hosts = hosts
        self.settings = settings
        self._labels: dict[int, Label] = {}
        self._members: dict[int, set[int]] = {}
        self._due: dict[int, float] = {}  # host id -> when its label queries are next due
        #: Bumped whenever a label query is added or changed; a host's answers push its next
        #: due time out only if they answer the queries of the current generation (an
        #: answer to queries handed out before a new label would otherwise hide it for an
        #: hour).
        self._generation = 0
        self._asked: dict[int, int] = {}  # host id -> generation of the queries it was sent
        self._digest: tuple[int, str] = (-1, "")  # (generation, digest of its label queries)
        hosts.on_loaded = self._fill

    # --- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Load labels and membership; create the built-in labels on a new database."""
        async with self.db.connect() as conn:
            rows = [r._mapping for r in await conn.execute(select(labels))]
            members = [r._mapping for r in await conn.execute(select(label_membership))]
        self._labels = {int(r["id"]): label_from_row(r) for r in rows}
        names = {label.name for label in self._labels.values()}
        for name, query, description in BUILTIN_LABELS:
            if name not in names:
                label = await self._insert(name, description, query, "", "builtin", "dynamic")
                self._labels[label.id] = label
        self._members = {label_id: set() for label_id in self._labels}
        for m in members:
            self._members.setdefault(int(m["label_id"]), set()).add(int(m["host_id"]))
        for host in self.hosts.all():
            host.labels = self.labels_of(host.id)
        if self.hosts.bus.clustered:
            self.index.add_listener(self._on_changes)
            self.hosts.bus.subscribe(DUE_CHANNEL, self._on_due)

    def _fill(self, host: HostState) -> None:
        host.labels = self.labels_of(host.id)

    def _on_changes(self, batch: Sequence[Change]) -> None:
        """Other nodes' label definitions and memberships (a cluster only)."""
        for change in batch:
            suffix = change.self_link.rsplit("/", 1)[-1]
            if not suffix.isdigit():
                continue
            if change.kind == LABEL_KIND:
                self._follow_label(int(suffix), change)
            elif change.kind == HOST_KIND:
                if change.action is Action.DELETE:
                    wanted: set[int] = set()
                else:
                    raw = change.body.get("labels")
                    if not isinstance(raw, list):
                        continue
                    wanted = {int(x["id"]) for x in raw if isinstance(x, dict) and "id" in x}
                host_id = int(suffix)
                for label_id, members in self._members.items():
                    if label_id in wanted:
                        members.add(host_id)
                    else:
                        members.discard(host_id)

    def _follow_label(self, label_id: int, change: Change) -> None:
        if change.action is Action.DELETE:
            self._labels.pop(label_id, None)
            self._members.pop(label_id, None)
            return
        try:
            label = label_from_document(label_id, change.body)
        except (KeyError, ValueError, TypeError):
            log.warning("ignored a malformed label document %s", change.self_link)
            return
        before = self._labels.get(label_id)
        if before is None or before.query != label.query:
            self._invalidate()  # every host runs the new query at its next check-in
        self._labels[label_id] = label
        self._members.setdefault(label_id, set())

    # --- reads -------------------------------------------------------------------------

    def info(self, label_id: int) -> LabelInfo | None:
        """What target resolution needs (None for an unknown label)."""
        label = self._labels.get(label_id)
        if label is None:
            return None
        return LabelInfo(
            id=label.id,
            builtin=label.builtin,
            all_hosts=label.name == ALL_HOSTS and label.builtin,
            members=frozenset(self._members.get(label_id, ())),
        )

    def labels_of(self, host_id: int) -> list[dict[str, Any]]:
        return [
            {"id": label.id, "name": label.name}
            for label in sorted(self._labels.values(), key=lambda lab: lab.id)
            if host_id in self._members.get(label.id, ())
        ]

    def members(self, label_id: int) -> set[int]:
        return set(self._members.get(label_id, ()))

    def to_json(self, label: Label) -> dict[str, Any]:
        return {
            "id": label.id,
            "name": label.name,
            "description": label.description,
            "query": label.query,
            "platform": label.platform,
            "label_type": label.label_type,
            "label_membership_type": label.membership_type,
            "host_count": len(self._members.get(label.id, ())),
            "created_at": iso(label.created_at),
            "updated_at": iso(label.updated_at),
        }

    def all_labels(self) -> list[dict[str, Any]]:
        return [self.to_json(lab) for lab in sorted(self._labels.values(), key=lambda x: x.id)]

    def get(self, label_id: int) -> dict[str, Any]:
        label = self._labels.get(label_id)
        if label is None:
            raise NotFound(f"no label with id {label_id}")
        return self.to_json(label)

    # --- writes ------------------------------------------------------------------------

    async def _insert(
        self,
        name: str,
        description: str,
        query: str,
        platform: str,
        label_type: str,
        membership_type: str,
    ) -> Label:
        now = time.time()
        row = {
            "name": name,
            "description": description,
            "query": query,
            "platform": platform,
            "label_type": label_type,
            "membership_type": membership_type,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.transaction() as conn:
            result = await conn.execute(insert(labels).returning(labels.c.id), [row])
            label_id = int(result.scalar_one())
        label = Label(id=label_id, **row)  # type: ignore[arg-type]
        await self._index(label)
        return label

    async def _index(self, label: Label) -> None:
        await self.index.write(
            Write(Action.PUT, f"/fleet/labels/{label.id}", LABEL_KIND, self.to_json(label))
        )

    async def _validate(
        self, name: Any, query: Any, platform: Any, manual: bool, own: int | None
    ) -> str:
        if not isinstance(name, str) or not name.strip():
            raise Invalid("name must be a non-empty string")
        if len(name) > 255:
            raise Invalid("name is longer than 255 characters")
        if any(lab.name == name.strip() and lab.id != own for lab in self._labels.values()):
            raise Conflict(f"a label named {name.strip()!r} already exists")
        if platform not in PLATFORMS:
            raise Invalid("platform must be darwin, windows, linux or empty")
        if manual:
            if query:
                raise Invalid("a manual label has hosts, not a query")
            return ""
        try:
            return await check_live_sql_off_loop(query)
        except InvalidSql as exc:
            raise Invalid(f"query: {exc}") from exc

    async def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create a dynamic label (`query`) or a manual one (`hosts`: ids)."""
        manual = fields.get("hosts") is not None
        platform = fields.get("platform") or ""
        query = await self._validate(
            fields.get("name"), fields.get("query"), platform, manual, None
        )
        description = str(fields.get("description") or "")
        label = await self._insert(
            str(fields["name"]).strip(),
            description,
            query,
            platform,
            "regular",
            "manual" if manual else "dynamic",
        )
        self._labels[label.id] = label
        self._members[label.id] = set()
        if manual:
            await self.set_members(label.id, _host_ids(fields["hosts"]))
        else:
            self._invalidate()  # every host runs the new label at its next check-in
        return self.to_json(label)

    async def update(self, label_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        label = self._labels.get(label_id)
        if label is None:
            raise NotFound(f"no label with id {label_id}")
        if label.builtin:
            raise Invalid("built-in labels cannot be changed")
        manual = label.membership_type == "manual"
        name = fields.get("name", label.name)
        description = fields.get("description", label.description)
        query = fields.get("query", label.query)
        query = await self._validate(
            name, query if not manual else None, label.platform, manual, label.id
        )
        values: dict[str, Any] = {
            "name": str(name).strip(),
            "description": str(description or ""),
            "query": query,
            "updated_at": time.time(),
        }
        async with self.db.transaction() as conn:
            await conn.execute(update(labels).where(labels.c.id == label_id).values(**values))
        label.name, label.description = values["name"], values["description"]
        if not manual and query != label.query:
            label.query = query
            self._invalidate()
        label.updated_at = float(values["updated_at"])
        if manual and fields.get("hosts") is not None:
            await self.set_members(label_id, _host_ids(fields["hosts"]))
        await self._index(label)
        return self.to_json(label)

    async def delete(self, label_id: int) -> None:
        """Delete a label; campaigns already running keep the hosts they resolved."""
        label = self._labels.get(label_id)
        if label is None:
            raise NotFound(f"no label with id {label_id}")
        if label.builtin:
            raise Invalid("built-in labels cannot be deleted")
        members = self._members.pop(label_id, set())
        del self._labels[label_id]
        async with self.db.transaction() as conn:
            await conn.execute(delete(labels).where(labels.c.id == label_id))
        await self.index.write(Write(Action.DELETE, f"/fleet/labels/{label_id}"))
        await self._publish(members)

    async def set_members(self, label_id: int, host_ids: Iterable[int]) -> None:
        """Replace a manual label's hosts (unknown host ids are an error)."""
        wanted = set(host_ids)
        unknown = sorted(h for h in wanted if self.hosts.by_id(h) is None)
        if unknown:
            raise Invalid(f"no host with id {unknown[0]}")
        before = self._members.get(label_id, set())
        await self._apply(label_id, added=wanted - before, removed=before - wanted)

    async def _apply(self, label_id: int, added: set[int], removed: set[int]) -> None:
        await self._apply_many([(label_id, added, removed)])

    async def _apply_many(self, changes: list[tuple[int, set[int], set[int]]]) -> None:
        """Membership changes of several labels in one transaction and one publication."""
        changes = [(label, add, rem) for label, add, rem in changes if add or rem]
        if not changes:
            return
        now = time.time()
        async with self.db.transaction() as conn:
            for label_id, added, removed in changes:
                if removed:
                    await conn.execute(
                        delete(label_membership).where(
                            label_membership.c.label_id == label_id,
                            label_membership.c.host_id.in_(sorted(removed)),
                        )
                    )
                if added:
                    await conn.execute(
                        insert(label_membership),
                        [{"label_id": label_id, "host_id": h, "updated_at": now} for h in added],
                    )
        touched: set[int] = set()
        for label_id, added, removed in changes:
            members = self._members.setdefault(label_id, set())
            members |= added
            members -= removed
            touched |= added | removed
        await self._publish(touched)

    async def _publish(self, host_ids: Iterable[int]) -> None:
        writes = []
        for host_id in host_ids:
            state = self.hosts.by_id(host_id)
            if state is None:
                continue
            state.labels = self.labels_of(host_id)
            writes.append(Write(Action.PATCH, host_link(host_id), body={"labels": state.labels}))
        if writes:
            outcomes = await self.index.apply(writes)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    log.warning("label membership not mirrored: %s", outcome)


def _host_ids(raw: Any) -> list[int]:
    if not isinstance(raw, list) or not all(
        isinstance(h, int) and not isinstance(h, bool) for h in raw
    ):
        raise Invalid("hosts must be a list of host ids")
    return list(raw)
