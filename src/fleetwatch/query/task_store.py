"""Persistence of query tasks, their webhook subscriptions and the tasks' log checkpoint.

Standing tasks survive a restart: each row holds the task as GET shows it, and one
checkpoint row records the change-log sequence their state reflects, written in the same
transaction as the task rows it describes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import Update

from fleetwatch.index.document import JsonObject, now_micros
from fleetwatch.query.pages import PLAIN, PageSet, PageView
from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import (
    query_page_sets,
    query_task_subscriptions,
    query_tasks,
    stream_checkpoints,
)

#: The checkpoint row of the standing query tasks.
TASKS_CHECKPOINT = "query-tasks"
#: Stages a task never leaves (as stored).
FINAL_STAGE_NAMES = ("FINISHED", "FAILED", "CANCELLED")


class TaskExists(Exception):
    def __init__(self, link: str) -> None:
        super().__init__(f"a query task already exists at {link}; DELETE it or choose another link")
        self.link = link


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A stored task."""

    self_link: str
    factory: str
    continuous: bool
    stage: str
    expiration_micros: int | None
    created_micros: int
    snapshot_seq: int
    owner_id: int | None
    body: JsonObject


@dataclass(frozen=True, slots=True)
class TaskHead:
    """What another node may have changed in a stored task (its body aside)."""

    self_link: str
    stage: str
    expiration_micros: int | None
    snapshot_seq: int


@dataclass(slots=True)
class WebhookRow:
    """A stored webhook subscription (mutable: its worker advances it)."""

    id: int
    task_link: str
    reference: str
    replay_state: bool
    state: str
    last_delivered_seq: int | None
    delivered_count: int
    failure_count: int
    failure_reason: str | None
    created_micros: int
    updated_micros: int

    def to_json(self, base: str) -> JsonObject:
        """The subscription as the API shows it."""
        return {
            "documentSelfLink": f"{base}/{self.id}",
            "id": self.id,
            "reference": self.reference,
            "replayState": self.replay_state,
            "state": self.state,
            "lastDeliveredSeq": self.last_delivered_seq,
            "notificationCount": self.delivered_count,
            "failedNotificationCount": self.failure_count,
            "failureReason": self.failure_reason,
            "documentUpdateTimeMicros": self.updated_micros,
        }


class TaskStore:
    """Reads and writes the query task tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- tasks -------------------------------------------------------------------------

    async def insert_task(self, row: TaskRow) -> None:
        """Store a new task; TaskExists if its link is taken."""
        try:
            async with self.db.transaction() as conn:
                await conn.execute(insert(query_tasks).values(**_task_values(row)))
        except IntegrityError:
            raise TaskExists(row.self_link) from None

    async def task_exists(self, link: str) -> bool:
        async with self.db.connect() as conn:
            found = await conn.execute(
                select(query_tasks.c.self_link).where(query_tasks.c.self_link == link)
            )
            return found.first() is not None

    async def save(
        self,
        tasks: Sequence[TaskRow],
        webhooks: Sequence[WebhookRow],
        checkpoint: int | None,
    ) -> None:
        """Update tasks and webhook cursors, and the checkpoint they reflect, atomically."""
        if not tasks and not webhooks and checkpoint is None:
            return
        async with self.db.transaction() as conn:
            for row in tasks:
                values = _task_values(row)
                del values["self_link"]
                statement = update(query_tasks).where(query_tasks.c.self_link == row.self_link)
                if row.stage not in FINAL_STAGE_NAMES:
                    # A node that has not heard of a cancel yet must not undo it.
                    statement = statement.where(query_tasks.c.stage.notin_(FINAL_STAGE_NAMES))
                await conn.execute(statement.values(**values))
            for hook in webhooks:
                await conn.execute(
                    _cursor_update(hook).values(
                        state=hook.state,
                        last_delivered_seq=hook.last_delivered_seq,
                        delivered_count=hook.delivered_count,
                        failure_count=hook.failure_count,
                        failure_reason=hook.failure_reason,
                        updated_micros=hook.updated_micros,
                    )
                )
            if checkpoint is not None:
                changed = await conn.execute(
                    update(stream_checkpoints)
                    .where(stream_checkpoints.c.name == TASKS_CHECKPOINT)
                    .values(seq=checkpoint)
                )
                if not changed.rowcount:
                    await conn.execute(
                        insert(stream_checkpoints).values(name=TASKS_CHECKPOINT, seq=checkpoint)
                    )

    async def delete_task(self, link: str) -> None:
        """Remove a task, its webhook subscriptions and its result pages."""
        async with self.db.transaction() as conn:
            await conn.execute(delete(query_page_sets).where(query_page_sets.c.task_link == link))
            await conn.execute(
                delete(query_task_subscriptions).where(query_task_subscriptions.c.task_link == link)
            )
            await conn.execute(delete(query_tasks).where(query_tasks.c.self_link == link))

    # --- result pages ------------------------------------------------------------------

    async def insert_page_set(self, page_set: PageSet) -> None:
        """Keep a task's result pages where every node can serve them."""
        async with self.db.transaction() as conn:
            await conn.execute(insert(query_page_sets), [_page_set_row(page_set)])

    async def insert_page_sets(self, page_sets: Sequence[PageSet]) -> None:
        """Keep many page sets (a GROUP_BY result's, a SINGLE_USE result's) in one go."""
        if not page_sets:
            return
        async with self.db.transaction() as conn:
            for i in range(0, len(page_sets), 500):
                chunk = page_sets[i : i + 500]
                await conn.execute(insert(query_page_sets), [_page_set_row(p) for p in chunk])

    async def claim_page_set(self, set_id: str) -> bool:
        """Delete a single-use page; True for the one caller that deleted it (any node)."""
        async with self.db.transaction() as conn:
            result = await conn.execute(
                delete(query_page_sets).where(query_page_sets.c.id == set_id)
            )
            return int(result.rowcount or 0) == 1

    async def load_page_set(self, set_id: str) -> PageSet | None:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(select(query_page_sets).where(query_page_sets.c.id == set_id))
            ).first()
        return None if row is None else _page_set_from_row(row._mapping)

    async def live_page_set_tasks(self, owner_id: int, now_micros: int) -> list[str]:
        """The task links of `owner_id`'s page sets that have not expired, one per run of
        a task: a GROUP_BY or SINGLE_USE run leaves many sets, all with its link and expiry."""
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(query_page_sets.c.task_link)
                .where(
                    query_page_sets.c.owner_id == owner_id,
                    query_page_sets.c.expiration_micros > now_micros,
                )
                .group_by(query_page_sets.c.task_link, query_page_sets.c.expiration_micros)
            )
            return [str(link) for link in rows.scalars()]

    async def delete_expired_page_sets(self, now_micros: int) -> int:
        async with self.db.transaction() as conn:
            result = await conn.execute(
                delete(query_page_sets).where(query_page_sets.c.expiration_micros <= now_micros)
            )
            return int(result.rowcount or 0)

    async def load_tasks(self, links: Sequence[str] | None = None) -> list[TaskRow]:
        """Every stored task, or those of `links` (read 500 at a time), oldest first."""
        statement = select(query_tasks).order_by(query_tasks.c.created_micros)
        if links is None:
            chunks = [statement]
        else:
            wanted = list(links)
            chunks = [
                statement.where(query_tasks.c.self_link.in_(wanted[i : i + 500]))
                for i in range(0, len(wanted), 500)
            ]
        rows: list[TaskRow] = []
        async with self.db.connect() as conn:
            for chunk in chunks:
                rows.extend(_task_row(r._mapping) for r in await conn.execute(chunk))
        rows.sort(key=lambda row: row.created_micros)
        return rows

    async def load_heads(self) -> list[TaskHead]:
        """Every stored task without its body: what a periodic sync compares."""
        c = query_tasks.c
        async with self.db.connect() as conn:
            result = await conn.execute(
                select(c.self_link, c.stage, c.expiration_micros, c.snapshot_seq).order_by(
                    c.created_micros
                )
            )
            return [
                TaskHead(
                    self_link=r.self_link,
                    stage=r.stage,
                    expiration_micros=None
                    if r.expiration_micros is None
                    else int(r.expiration_micros),
                    snapshot_seq=int(r.snapshot_seq),
                )
                for r in result
            ]

    async def checkpoint(self) -> int | None:
        """The sequence the stored task state reflects, or None before the first save."""
        async with self.db.connect() as conn:
            value = (
                await conn.execute(
                    select(stream_checkpoints.c.seq).where(
                        stream_checkpoints.c.name == TASKS_CHECKPOINT
                    )
                )
            ).scalar()
        return None if value is None else int(value)

    # --- webhook subscriptions ---------------------------------------------------------

    async def insert_webhook(
        self, task_link: str, reference: str, replay_state: bool, start_seq: int | None
    ) -> WebhookRow:
        micros = now_micros()
        values: dict[str, Any] = {
            "task_link": task_link,
            "reference": reference,
            "replay_state": replay_state,
            "state": "active",
            "last_delivered_seq": start_seq,
            "delivered_count": 0,
            "failure_count": 0,
            "failure_reason": None,
            "created_micros": micros,
            "updated_micros": micros,
        }
        async with self.db.transaction() as conn:
            result = await conn.execute(
                insert(query_task_subscriptions)
                .values(**values)
                .returning(query_task_subscriptions.c.id)
            )
            new_id = int(result.scalar_one())
        return WebhookRow(id=new_id, **values)

    async def save_cursor(self, hook: WebhookRow) -> bool:
        """Record a delivery at once (a cluster's webhook owner does, so its successor
        resumes right after it). The cursor only moves forward: a stale owner's late write
        cannot move it back. False if the subscription is gone."""
        async with self.db.transaction() as conn:
            result = await conn.execute(
                _cursor_update(hook).values(
                    last_delivered_seq=hook.last_delivered_seq,
                    delivered_count=hook.delivered_count,
                    failure_count=hook.failure_count,
                    failure_reason=hook.failure_reason,
                    updated_micros=hook.updated_micros,
                )
            )
            return bool(result.rowcount)

    async def delete_webhook(self, hook_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                delete(query_task_subscriptions).where(query_task_subscriptions.c.id == hook_id)
            )

    async def load_webhooks(self) -> list[WebhookRow]:
        async with self.db.connect() as conn:
            result = await conn.execute(
                select(query_task_subscriptions).order_by(query_task_subscriptions.c.id)
            )
            return [_webhook_row(r._mapping) for r in result]


def _cursor_update(hook: WebhookRow) -> Update:
    """An UPDATE of a subscription that never moves its cursor back (a node that lost the
    webhooks lease may still be saving when its successor already delivered further)."""
    statement = update(query_task_subscriptions).where(query_task_subscriptions.c.id == hook.id)
    if hook.last_delivered_seq is not None:
        statement = statement.where(
            or_(
                query_task_subscriptions.c.last_delivered_seq.is_(None),
                query_task_subscriptions.c.last_delivered_seq <= hook.last_delivered_seq,
            )
        )
    return statement


def _task_values(row: TaskRow) -> dict[str, Any]:
    return {
        "self_link": row.self_link,
        "factory": row.factory,
        "continuous": row.continuous,
        "stage": row.stage,
        "expiration_micros": row.expiration_micros,
        "created_micros": row.created_micros,
        "snapshot_seq": row.snapshot_seq,
        "owner_id": row.owner_id,
        "body": row.body,
    }


def _task_row(m: Any) -> TaskRow:
    return TaskRow(
        self_link=m["self_link"],
        factory=m["factory"],
        continuous=bool(m["continuous"]),
        stage=m["stage"],
        expiration_micros=None if m["expiration_micros"] is None else int(m["expiration_micros"]),
        created_micros=int(m["created_micros"]),
        snapshot_seq=int(m["snapshot_seq"]),
        owner_id=None if m["owner_id"] is None else int(m["owner_id"]),
        body=m["body"],
    )


def _webhook_row(m: Any) -> WebhookRow:
    last = m["last_delivered_seq"]
    return WebhookRow(
        id=int(m["id"]),
        task_link=m["task_link"],
        reference=m["reference"],
        replay_state=bool(m["replay_state"]),
        state=m["state"],
        last_delivered_seq=None if last is None else int(last),
        delivered_count=int(m["delivered_count"]),
        failure_count=int(m["failure_count"]),
        failure_reason=m["failure_reason"],
        created_micros=int(m["created_micros"]),
        updated_micros=int(m["updated_micros"]),
    )


def _page_set_row(page_set: PageSet) -> dict[str, Any]:
    """A page set as a row; a view other than the plain one rides in the `links` column
    (as {"links": [...], "view": {...}}), so older rows (a plain list) still read."""
    row = {f.name: getattr(page_set, f.name) for f in dataclasses.fields(page_set)}
    view = row.pop("view")
    if view != PLAIN:
        row["links"] = {"links": page_set.links, "view": view.to_json()}
    return row


def _page_set_from_row(mapping: Any) -> PageSet:
    row = dict(mapping)
    links = row["links"]
    if isinstance(links, dict):
        row["links"] = links["links"]
        row["view"] = PageView.from_json(links["view"])
    return PageSet(**row)
