"""The query task service: one-shot and continuous tasks, their lifecycle and persistence.

`POST /core/local-query-tasks` (and `/core/query-tasks`) lands in `create`: a direct task
answers with its results; any other task is stored and answered 202. A one-shot task runs
in SQL in one snapshot; a continuous one opens a stream in the subscription hub (its query
joins the shared predicate index) with its initial results read in a snapshot at sequence
S, so its counters and subscribers start at S+1.

Lifecycle: PATCH `taskInfo.stage` CANCELLED (or FINISHED/FAILED) stops a continuous task
and closes its subscribers; DELETE stops it and removes it (no filter is left behind); a
task expires at `documentExpirationTimeMicros` (default 600 s after creation, as in Xenon)
and is then removed like a DELETE; a later expiry than `max_task_lifetime` from now (Xenon's
2**63-1 "never" included) is lowered to it, so no task outlives its users unattended. A user
holds at most `max_tasks_per_user` tasks: one more answers 429. A direct task keeps nothing
but, with a `resultLimit`, its result pages: they last until its expiry, at most
`DIRECT_PAGES_SECONDS` (the default expiry) after it ran, and each such live page set counts
as one of the user's tasks (on every node: they are counted in the store), so a user cannot
pile up page sets by sending direct tasks. Pages to keep longer need a standing task.
Standing tasks, their counters and webhook subscriptions are persisted and resumed after a
restart from the last sequence they reflect.

On a cluster every node runs every standing task (each sees the whole change log), so a
stream of any task can be opened on any node; a node that creates, changes or removes a
task tells the others (`Invalidations`, topic `query-tasks`), which re-read the task table.
Each saved task row carries the sequence its state reflects, so whichever node saved it
last, a node adopting it resumes right after. Webhook deliveries are a once-only job: the
holder of the `webhooks` lease delivers them (see `fleetwatch.query.webhooks`).

The server keeps standing tasks of its own too (`ensure_system`, e.g. a policy's failing
hosts, whose webhooks are the policy's automations): they live under `SYSTEM_BASE`, outside
every factory, have no owner and never expire; on a cluster they are shared like any task.

The service is spread over modules, one noun each: `task_requests` (factories, links,
request bodies, `TaskError`), `task_records` (a task's record), `task_store` (its rows),
`task_initial` (initial results), `task_runs` (one-shot and direct runs, continuous
starts, the per-user limit), `task_subscriptions` (stream subscribers, message JSON and
webhook subscriptions), `task_resume` (resuming after a restart, and a cluster's `sync`)
and `task_scopes` (holding running tasks to their owner's current roles).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging

from fleetwatch.bus.bus import Invalidations, Lease, LocalLease, cancel_all
from fleetwatch.config import Settings
from fleetwatch.index.document import JsonObject, now_micros
from fleetwatch.index.store import DocumentIndex
from fleetwatch.outbound import OutboundGuard
from fleetwatch.periodic import Periodic
from fleetwatch.query.option_rules import parse_query_task
from fleetwatch.query.page_reader import PageMissing, find_page, read_page
from fleetwatch.query.pages import PageStore
from fleetwatch.query.rendering import PageGone
from fleetwatch.query.scope import check_size
from fleetwatch.query.spec import Query, QuerySpecError, QueryTask
from fleetwatch.query.spec_enums import TaskStage
from fleetwatch.query.subscriptions import InitialLoader, SubscriptionHub
from fleetwatch.query.task_initial import initial_loader
from fleetwatch.query.task_records import FINAL_STAGES, TaskRecord
from fleetwatch.query.task_requests import (
    FACTORIES,
    NEVER,
    SYSTEM_FACTORY,
    TaskError,
    link_for,
    link_taken,
    parse_patch,
    system_link,
)
from fleetwatch.query.task_resume import TaskResume
from fleetwatch.query.task_runs import TaskRuns
from fleetwatch.query.task_scopes import SCOPE_CHECK_INTERVAL, OwnerScopes, TaskScopes
from fleetwatch.query.task_store import TaskExists, TaskStore
from fleetwatch.query.task_subscriptions import TaskSubscriptions
from fleetwatch.query.webhooks import WebhookDispatcher, WebhookPolicy

log = logging.getLogger(__name__)

#: How often dirty task state and webhook cursors are saved.
FLUSH_INTERVAL = 0.5
#: How often a cluster node re-reads the task table even without being told.
SYNC_INTERVAL = 5.0
#: The invalidation topic of the task and webhook tables.
TOPIC = "query-tasks"
#: How often expired result pages are deleted from the store (seconds).
PAGE_PURGE_INTERVAL = 60.0


class QueryTaskService(TaskResume, TaskRuns, TaskSubscriptions, TaskScopes):
    """Owns every query task, their streams in the hub, pages and webhook subscriptions."""

    def __init__(
        self,
        index: DocumentIndex,
        hub: SubscriptionHub,
        settings: Settings,
        invalidations: Invalidations | None = None,
        webhook_lease: Lease | None = None,
        owner_scopes: OwnerScopes | None = None,
    ) -> None:
        self.index = index
        #: Each task owner's current scope (see `fleetwatch.query.task_scopes`).
        self.owner_scopes = owner_scopes
        self.hub = hub
        self.settings = settings
        self.invalidations = invalidations
        self.clustered = invalidations is not None and invalidations.bus.clustered
        self.webhook_lease: Lease = webhook_lease or LocalLease("webhooks")
        self.store = TaskStore(index.db)
        self.pages = PageStore()
        self.webhooks = WebhookDispatcher(
            hub,
            self.store,
            WebhookPolicy(
                failure_limit=settings.webhook_failure_limit,
                retry_base=settings.webhook_retry_base,
                timeout=settings.webhook_timeout,
                max_per_task=settings.max_webhooks_per_task,
            ),
            self.format,
            self._loader_for_link,
            OutboundGuard(settings.outbound_networks),
        )
        self._tasks: dict[str, TaskRecord] = {}
        #: Per owner, tasks (or direct page sets) being created on this node (not added yet).
        self._starting: dict[int, int] = {}
        #: Per owner: one limit check (which reads the store) at a time.
        self._limit_locks: dict[int, asyncio.Lock] = {}
        self._expiry: list[tuple[int, str]] = []
        self._loops = [
            Periodic(
                "fleetwatch-task-flush",
                self.flush,
                FLUSH_INTERVAL,
                failure="saving query task state failed; retrying",
            ),
            Periodic(
                "fleetwatch-task-expiry",
                self._expire_step,
                settings.expiry_sweep_interval,
                failure="query task expiry failed",
            ),
        ]
        if owner_scopes is not None:
            self._loops.append(
                Periodic(
                    "fleetwatch-task-scopes",
                    self._check_scopes_step,
                    SCOPE_CHECK_INTERVAL,
                    failure="checking query task owners' scopes failed (the database is away?)",
                )
            )
        if self.clustered:
            self._loops.append(
                Periodic(
                    "fleetwatch-task-sync",
                    self.sync,
                    SYNC_INTERVAL,
                    failure="query task sync failed (the database is away?)",
                )
            )
        self._owner_loop: asyncio.Task[None] | None = None
        self._save_lock = asyncio.Lock()
        # One subscription at a time: the per-task limit and the duplicate check hold.
        self._subscribe_lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()
        self._pages_purged_micros = 0
        self.webhooks.may_deliver = lambda: self.webhook_lease.held
        self.webhooks.durable = self.clustered
        if invalidations is not None:
            invalidations.register(TOPIC, self.sync)

    @property
    def dialect(self) -> str:
        return self.index.db.dialect

    # --- start / stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Load stored tasks, resume the standing ones, start the background loops."""
        # On one node the checkpoint is what every saved row reflects; on a cluster other
        # nodes save too, so each row's own sequence is the one to trust.
        checkpoint = None if self.clustered else await self.store.checkpoint()
        records = [
            record
            for row in await self.store.load_tasks()
            if (record := self._record_from_row(row)) is not None
        ]
        # the owners' roles may have changed while the server was down
        await self._rescope_loaded(records)
        for record in records:
            self._lower_expiry(record)
            if record.running:
                await self._resume(record, checkpoint)
            self._add(record)
        self.webhooks.restore(await self.store.load_webhooks(), self._is_running)
        for loop in self._loops:
            loop.start()
        if self.clustered:
            self._owner_loop = asyncio.create_task(
                self._webhook_owner_loop(), name="fleetwatch-webhook-owner"
            )

    def _changed(self) -> None:
        if self.invalidations is not None:
            self.invalidations.changed(TOPIC)

    async def stop(self) -> None:
        """Stop the loops and workers, save what is unsaved."""
        if self._owner_loop is not None:
            await cancel_all([self._owner_loop])
            self._owner_loop = None
        # Between steps, not inside one: a save cut short would lose the cursors it took.
        # Together, so a database that hangs costs one grace period, not one per loop.
        await asyncio.gather(*(loop.stop() for loop in self._loops))
        await self.webhooks.stop()
        try:
            await self.flush()
        except Exception:
            log.exception("could not save the query tasks at shutdown")

    # --- reads -------------------------------------------------------------------------

    def links(self, factory: str, owner_id: int | None = None) -> list[str]:
        """The tasks of one factory, oldest first (only `owner_id`'s when given)."""
        prefix = FACTORIES[factory] + "/"
        return [
            link
            for link, record in self._tasks.items()
            if link.startswith(prefix) and (owner_id is None or record.owner_id == owner_id)
        ]

    def get(self, link: str, owner_id: int | None = None) -> TaskRecord:
        """A task; 404 when there is none, or (with `owner_id`) when another user owns it,
        so task ids do not leak between users who may see only their own."""
        record = self._tasks.get(link)
        if record is None or (owner_id is not None and record.owner_id != owner_id):
            raise TaskError(404, f"no query task at {link}")
        return record

    async def page_owner(self, page_id: str) -> int | None:
        """The user whose task made a result page (None when unknown)."""
        found = await find_page(self.pages, self.store, page_id)
        return found[0].owner_id if found is not None else None

    def _is_running(self, link: str) -> bool:
        record = self._tasks.get(link)
        return record is not None and record.running

    # --- create ------------------------------------------------------------------------

    async def create(
        self,
        factory: str,
        raw: object,
        owner_id: int | None = None,
        scope: Query | None = None,
        *,
        sees_all: bool = True,
    ) -> tuple[int, JsonObject]:
        """POST to a factory: (HTTP status, body). `scope` is ANDed onto the task's query
        for as long as it runs (see `fleetwatch.query.scope`). Without `sees_all`, the
        creator sees only their own tasks: a link taken by another user's task answers 404,
        as reading it would, rather than 409."""
        try:
            task = parse_query_task(raw)
            check_size(task.query, scope)
        except QuerySpecError as exc:
            raise TaskError(400, str(exc)) from None
        link = link_for(factory, task.document_self_link)
        if task.task_info.is_direct:
            return 200, await self._run_direct(factory, link, task, scope, owner_id)
        existing = self._tasks.get(link)
        if existing is not None:
            raise link_taken(link, existing.owner_id, owner_id, sees_all)
        async with self._reserve(owner_id):
            return await self._create_standing(factory, link, task, owner_id, scope, sees_all)

    async def _create_standing(
        self,
        factory: str,
        link: str,
        task: QueryTask,
        owner_id: int | None,
        scope: Query | None,
        sees_all: bool,
    ) -> tuple[int, JsonObject]:
        """Store and start a task that is not direct (one-shot or continuous)."""
        micros = now_micros()
        expiration = self._expiration(task.document_expiration_time_micros, micros)
        record = TaskRecord(
            link=link,
            factory=factory,
            task=task,
            stage=TaskStage.STARTED if task.spec.is_continuous else TaskStage.CREATED,
            expiration_micros=expiration,
            created_micros=micros,
            owner_id=owner_id,
            update_micros=micros,
            scope=scope,
        )
        try:
            await self._store_and_start(record)
        except TaskExists:
            # another node's task this node has not adopted yet
            rows = await self.store.load_tasks([link])
            holder = rows[0].owner_id if rows else None
            raise link_taken(link, holder, owner_id, sees_all) from None
        return 202, record.to_json()

    async def _store_and_start(self, record: TaskRecord) -> None:
        """Claim the task's link (TaskExists when taken on any node), run or start it, and
        add it; nothing is left behind when it cannot start."""
        micros = record.created_micros
        link = record.link
        await self.store.insert_task(record.row())  # claims the link (all nodes)
        try:
            if record.continuous:
                await self._start_continuous(record)
            else:
                await self._run_one_shot(record)
            record.duration_micros = now_micros() - micros
            record.dirty = False
            await self.store.save([record.row()], [], None)
        except BaseException:
            await self.hub.close_stream(link, "the task could not start")
            with contextlib.suppress(Exception):
                await self.store.delete_task(link)
            raise
        self._add(record)
        self._changed()

    async def ensure_system(self, name: str, raw: object) -> str:
        """The link of the server's own standing task `name`, started from the task body
        `raw` unless it runs already (here, or stored by another node: adopted then)."""
        link = system_link(name)
        if link in self._tasks:
            return link
        try:
            task = parse_query_task(raw)
        except QuerySpecError as exc:
            raise ValueError(f"system task {name}: {exc}") from None
        micros = now_micros()
        record = TaskRecord(
            link=link,
            factory=SYSTEM_FACTORY,
            task=task,
            stage=TaskStage.STARTED if task.spec.is_continuous else TaskStage.CREATED,
            expiration_micros=NEVER,
            created_micros=micros,
            update_micros=micros,
        )
        try:
            await self._store_and_start(record)
        except TaskExists:
            await self.sync()  # another node made it first: adopt it
            return link
        # subscriptions stored before the task ran (moved from an older table) start now
        self.webhooks.restore(await self.store.load_webhooks(), self._is_running)
        return link

    async def remove_system(self, name: str, reason: str) -> None:
        """Stop and delete the server's own task `name` and its webhook subscriptions."""
        record = self._tasks.get(system_link(name))
        if record is not None:
            await self._remove(record, reason)
        else:
            await self.store.delete_task(system_link(name))
            self._changed()

    def _add(self, record: TaskRecord) -> None:
        self._tasks[record.link] = record
        heapq.heappush(self._expiry, (record.expiration_micros, record.link))

    def _loader_for_link(self, link: str) -> InitialLoader:
        # webhook bodies are stream messages: every initial one has its cursor as seq
        return initial_loader(self.get(link), self.dialect, cursors=True)

    # --- change ------------------------------------------------------------------------

    async def patch(self, link: str, raw: object) -> JsonObject:
        """PATCH a task: a final stage stops it; documentExpirationTimeMicros moves expiry."""
        record = self.get(link)
        stage, info, expiration = parse_patch(raw)
        if expiration is not None:
            record.expiration_micros = self._expiration(expiration, now_micros())
            heapq.heappush(self._expiry, (record.expiration_micros, record.link))
        if stage is not None and record.stage not in FINAL_STAGES:
            record.stage = stage
            if isinstance(info, dict) and isinstance(info.get("failure"), dict):
                record.failure = info["failure"]
            await self.hub.close_stream(link, f"the task was {stage.value.lower()}")
        record.touch()
        await self._save(record)
        self._changed()
        return record.to_json()

    async def delete(self, link: str) -> JsonObject:
        """Stop and remove a task; its last state is returned."""
        record = self.get(link)
        await self._remove(record, "the task was deleted")
        return record.to_json()

    async def _remove(self, record: TaskRecord, reason: str) -> None:
        await self._forget(record, reason)
        await self.store.delete_task(record.link)
        self._changed()

    async def _forget(self, record: TaskRecord, reason: str) -> None:
        """Stop a task on this node (its row is gone, or about to be)."""
        self._tasks.pop(record.link, None)
        await self.hub.close_stream(record.link, reason)
        await self.webhooks.forget_task(record.link)
        self.pages.drop_task(record.link)

    async def _save(self, record: TaskRecord) -> None:
        async with self._save_lock:
            record.dirty = False
            await self.store.save([record.row()], [], None)

    # --- pages -------------------------------------------------------------------------

    async def page(self, page_id: str) -> JsonObject:
        """GET /core/query-page/{id}: one page of a paged result."""
        try:
            return await read_page(self.index.db, self.pages, self.store, page_id)
        except PageMissing as exc:
            raise TaskError(404, str(exc)) from None
        except PageGone as exc:
            raise TaskError(410, f"query page {page_id}: {exc}") from None

    # --- background --------------------------------------------------------------------

    async def flush(self) -> None:
        """Save dirty tasks and webhook cursors with the sequence they reflect."""
        async with self._save_lock:
            checkpoint = self.hub.position
            rows = []
            for record in self._tasks.values():
                if record.dirty:
                    record.dirty = False
                    record.state_seq = checkpoint
                    rows.append(record.row())
            hooks = self.webhooks.take_dirty()
            try:
                await self.store.save(rows, hooks, checkpoint)
            except BaseException:  # saved next time: nothing taken out here is dropped
                for row in rows:
                    if row.self_link in self._tasks:
                        self._tasks[row.self_link].dirty = True
                self.webhooks.put_back_dirty(hooks)
                raise

    async def expire_due(self, now: int | None = None) -> int:
        """Remove every task whose expiry has passed; return how many."""
        current = now_micros() if now is None else now
        removed = 0
        while self._expiry and self._expiry[0][0] <= current:
            expiration, link = heapq.heappop(self._expiry)
            record = self._tasks.get(link)
            if record is None or record.expiration_micros != expiration:
                continue  # deleted, or its expiry moved (a newer heap entry exists)
            await self._remove(record, "the task expired")
            removed += 1
        self.pages.sweep(current)
        if current - self._pages_purged_micros >= PAGE_PURGE_INTERVAL * 1_000_000:
            self._pages_purged_micros = current
            await self.store.delete_expired_page_sets(current)
        return removed

    async def _expire_step(self) -> None:
        await self.expire_due()

    async def _check_scopes_step(self) -> None:
        await self.check_scopes()

    # --- gauges ------------------------------------------------------------------------

    def stats(self) -> JsonObject:
        """Counts for tests and operators: tasks, active filters, subscribers, webhooks."""
        return {
            "tasks": len(self._tasks),
            "runningTasks": sum(1 for r in self._tasks.values() if r.running),
            "activeQueryFilterCount": self.hub.active_filters,
            "subscribers": self.hub.subscriber_count,
            "webhookWorkers": self.webhooks.active_workers,
            "pageSets": len(self.pages),
            "sequence": self.hub.position,
        }
