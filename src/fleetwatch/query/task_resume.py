"""Resuming stored query tasks: after a restart, from the sequence each saved row
reflects, and on a cluster those other nodes created, changed or removed (`sync`)."""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import TYPE_CHECKING

from fleetwatch.bus.bus import Lease
from fleetwatch.config import Settings
from fleetwatch.index.document import now_micros
from fleetwatch.query.option_rules import parse_query_task
from fleetwatch.query.scope import parse_scope
from fleetwatch.query.spec import QuerySpecError
from fleetwatch.query.spec_enums import TaskStage
from fleetwatch.query.stream_messages import ResumeTooOld
from fleetwatch.query.subscriptions import InitialLoader, SubscriptionHub
from fleetwatch.query.task_initial import initial_loader, set_initial
from fleetwatch.query.task_records import TaskRecord
from fleetwatch.query.task_requests import is_system
from fleetwatch.query.task_store import TaskRow, TaskStore
from fleetwatch.query.webhooks import WebhookDispatcher

# The service's logger: its messages keep the name operators filter on.
log = logging.getLogger("fleetwatch.query.tasks")


class TaskResume:
    """The part of `QueryTaskService` that brings stored tasks back into the hub."""

    hub: SubscriptionHub
    settings: Settings
    store: TaskStore
    webhooks: WebhookDispatcher
    webhook_lease: Lease
    _tasks: dict[str, TaskRecord]
    _expiry: list[tuple[int, str]]
    _sync_lock: asyncio.Lock

    if TYPE_CHECKING:

        @property
        def dialect(self) -> str: ...

        def _add(self, record: TaskRecord) -> None: ...

        def _is_running(self, link: str) -> bool: ...

        async def _forget(self, record: TaskRecord, reason: str) -> None: ...

        async def _rescope_loaded(self, records: list[TaskRecord]) -> None: ...

    def _lower_expiry(self, record: TaskRecord) -> None:
        """A task stored with a later expiry than max_task_lifetime allows from now (saved
        before the limit, or under a larger one) gets the latest allowed (saved soon)."""
        latest = now_micros() + int(self.settings.max_task_lifetime * 1_000_000)
        if record.expiration_micros > latest and not is_system(record.link):
            record.expiration_micros = latest
            record.dirty = True

    def _record_from_row(self, row: TaskRow) -> TaskRecord | None:
        try:
            task = parse_query_task(row.body)
            scope = parse_scope(row.body.get("scope"))
        except QuerySpecError as exc:
            log.error("stored query task %s is invalid and is skipped: %s", row.self_link, exc)
            return None
        body = row.body
        record = TaskRecord(
            link=row.self_link,
            factory=row.factory,
            task=task,
            stage=TaskStage(row.stage),
            expiration_micros=row.expiration_micros or 0,
            created_micros=row.created_micros,
            owner_id=row.owner_id,
            snapshot_seq=int(body.get("seq", row.snapshot_seq)),
            state_seq=row.snapshot_seq,
            results=body.get("results") or {},
            version=int(body.get("documentVersion") or 0),
            update_micros=int(body.get("documentUpdateTimeMicros") or 0),
            duration_micros=int((body.get("taskInfo") or {}).get("durationMicros") or 0),
            scope=scope,
        )
        if body.get("asOfSeq") is not None:
            record.as_of_seq = int(body["asOfSeq"])
        if record.continuous:
            record.resume_counting()
        return record

    async def sync(self) -> None:
        """Make this node's tasks what the task table holds (another node changed it)."""
        async with self._sync_lock:
            # Heads only: a task's body is read once, when this node first adopts it.
            heads = {head.self_link: head for head in await self.store.load_heads()}
            for link, record in list(self._tasks.items()):
                head = heads.get(link)
                if head is None:
                    await self._forget(record, "the task was deleted")
                elif head.stage != record.stage.value and record.running:
                    record.stage = TaskStage(head.stage)
                    await self.hub.close_stream(link, f"the task was {head.stage.lower()}")
                if head is not None and (head.expiration_micros or 0) != record.expiration_micros:
                    record.expiration_micros = head.expiration_micros or 0
                    heapq.heappush(self._expiry, (record.expiration_micros, link))
            new = [
                link
                for link, head in heads.items()
                # known, or its creator has not read its initial results yet
                if link not in self._tasks and head.snapshot_seq >= 0
            ]
            adopted_records = []
            for row in await self.store.load_tasks(new) if new else []:
                if row.self_link in self._tasks or row.snapshot_seq < 0:
                    continue
                adopted = self._record_from_row(row)
                if adopted is not None:
                    adopted_records.append(adopted)
            # the owner's roles may have changed since the task's scope was saved
            await self._rescope_loaded(adopted_records)
            for adopted in adopted_records:
                if adopted.running:
                    await self._resume(adopted, None)
                self._add(adopted)
            self.webhooks.restore(await self.store.load_webhooks(), self._is_running)

    async def _webhook_owner_loop(self) -> None:
        """Deliver webhooks while this node holds the lease; stop the moment it does not."""
        while True:
            await self.webhook_lease.wait_held()
            try:
                await self.sync()  # every task and subscription, cursors as last saved
            except Exception as exc:
                log.warning("taking over webhook delivery failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            while self.webhook_lease.held:
                await asyncio.sleep(0.1)
            self.webhooks.release()

    async def _resume(self, record: TaskRecord, checkpoint: int | None) -> None:
        loader: InitialLoader | None = initial_loader(record, self.dialect)
        if record.snapshot_seq < 0:  # stored but never initialised: start afresh
            since = None
        else:
            since = max(record.state_seq, record.snapshot_seq, checkpoint or 0)
        if since is not None and since >= self.hub.position:
            since = None
            loader = None  # nothing happened since its state was saved
        try:
            await self.hub.open_stream(
                record.link,
                record.effective_query,
                mode=record.mode,
                observer=record,
                loader=loader,
                since=since,
                as_of=record.as_of_seq,
                initialize=lambda initial: set_initial(record, initial, self.hub.position),
                squash_millis=record.squash_millis,
            )
        except ResumeTooOld as exc:
            # its boundary left the change log while the server was down: it cannot go on
            log.error("query task %s cannot resume: %s", record.link, exc)
            record.stage = TaskStage.FAILED
            record.failure = {"message": f"the task could not resume: {exc}"}
            record.touch()
