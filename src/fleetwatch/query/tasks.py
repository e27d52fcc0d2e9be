"""The query task service: one-shot and continuous tasks, their lifecycle and persistence.

`POST /core/local-query-tasks` (and `/core/query-tasks`) lands in `create`: a direct task
answers with its results; any other task is stored and answered 202. A one-shot task runs
in SQL in one snapshot; a continuous one opens a stream in the subscription hub (its query
joins the shared predicate index) with its initial results read in a snapshot at sequence
S, so its counters and subscribers start at S+1.

Lifecycle: PATCH `taskInfo.stage` CANCELLED (or FINISHED/FAILED) stops a continuous task
and closes its subscribers; DELETE stops it and removes it (no filter is left behind); a
task expires at `documentExpirationTimeMicros` (default 600 s after creation, as in Xenon;
2**63-1 never expires) and is then removed like a DELETE. Standing tasks, their counters and
webhook subscriptions are persisted and resumed after a restart from the last sequence
they reflect.

On a cluster every node runs every standing task (each sees the whole change log), so a
stream of any task can be opened on any node; a node that creates, changes or removes a
task tells the others (`Invalidations`, topic `query-tasks`), which re-read the task table.
Each saved task row carries the sequence its state reflects, so whichever node saved it
last, a node adopting it resumes right after. Webhook deliveries are a once-only job: the
holder of the `webhooks` lease delivers them (see `fleetwatch.query.webhooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import re
import secrets
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.bus.bus import Invalidations, Lease, LocalLease, cancel_all
from fleetwatch.config import Settings
from fleetwatch.index.document import JsonObject, now_micros
from fleetwatch.index.store import DocumentIndex
from fleetwatch.periodic import Periodic
from fleetwatch.query import execution
from fleetwatch.query.notifications import message_json
from fleetwatch.query.pages import PageSet, PageStore
from fleetwatch.query.scope import check_size, parse_scope
from fleetwatch.query.snapshot import snapshot
from fleetwatch.query.spec import (
    Query,
    QueryOption,
    QuerySpecError,
    QueryTask,
    TaskStage,
    parse_query_task,
)
from fleetwatch.query.subscriptions import (
    Initial,
    InitialLoader,
    Message,
    Subscription,
    SubscriptionHub,
)
from fleetwatch.query.task_records import FINAL_STAGES, Counters, TaskRecord
from fleetwatch.query.task_store import TaskExists, TaskRow, TaskStore, WebhookRow
from fleetwatch.query.webhooks import WebhookDispatcher, WebhookPolicy

log = logging.getLogger(__name__)

#: The task factories and their paths.
FACTORIES = {
    "local-query-tasks": "/core/local-query-tasks",
    "query-tasks": "/core/query-tasks",
}
#: Xenon's QueryTaskService.DEFAULT_EXPIRATION_SECONDS.
DEFAULT_EXPIRATION_SECONDS = 600
#: Documents per initial-results message.
INITIAL_CHUNK = 500
#: How often dirty task state and webhook cursors are saved.
FLUSH_INTERVAL = 0.5
#: How often a cluster node re-reads the task table even without being told.
SYNC_INTERVAL = 5.0
#: The invalidation topic of the task and webhook tables.
TOPIC = "query-tasks"
#: How often expired result pages are deleted from the store (seconds).
PAGE_PURGE_INTERVAL = 60.0
_ID = re.compile(r"^[A-Za-z0-9._~-]{1,200}$")


class TaskError(Exception):
    """A request the task service refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class QueryTaskService:
    """Owns every query task, their streams in the hub, pages and webhook subscriptions."""

    def __init__(
        self,
        index: DocumentIndex,
        hub: SubscriptionHub,
        settings: Settings,
        invalidations: Invalidations | None = None,
        webhook_lease: Lease | None = None,
    ) -> None:
        self.index = index
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
            ),
            self.format,
            self._loader_for_link,
        )
        self._tasks: dict[str, TaskRecord] = {}
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
        for row in await self.store.load_tasks():
            record = self._record_from_row(row)
            if record is None:
                continue
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
        if record.count and record.continuous:
            record.counters = Counters.from_results(record.results)
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
            for row in await self.store.load_tasks(new) if new else []:
                if row.self_link in self._tasks or row.snapshot_seq < 0:
                    continue
                adopted = self._record_from_row(row)
                if adopted is None:
                    continue
                if adopted.running:
                    await self._resume(adopted, None)
                self._add(adopted)
            self.webhooks.restore(await self.store.load_webhooks(), self._is_running)

    def _changed(self) -> None:
        if self.invalidations is not None:
            self.invalidations.changed(TOPIC)

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
        loader: InitialLoader | None = self._loader(record)
        if record.snapshot_seq < 0:  # stored but never initialised: start afresh
            since = None
        else:
            since = max(record.state_seq, record.snapshot_seq, checkpoint or 0)
        if since is not None and since >= self.hub.position:
            since = None
            loader = None  # nothing happened since its state was saved
        _, initial = await self.hub.open_stream(
            record.link,
            record.effective_query,
            mode=record.mode,
            observer=record,
            loader=loader,
            since=since,
        )
        if initial:
            self._set_initial(record, initial)

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
        found = await self._find_page(page_id)
        return found[0].owner_id if found is not None else None

    async def _find_page(self, page_id: str) -> tuple[PageSet, int] | None:
        """A page from the cache, or from the store (another node cut it)."""
        found = self.pages.find(page_id)
        if found is None:
            stored = await self.store.load_page_set(page_id.rpartition("-")[0])
            if stored is not None and stored.expiration_micros > now_micros():
                self.pages.add(stored)
                found = self.pages.find(page_id)
        return found

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
    ) -> tuple[int, JsonObject]:
        """POST to a factory: (HTTP status, body). `scope` is ANDed onto the task's query
        for as long as it runs (see `fleetwatch.query.scope`)."""
        try:
            task = parse_query_task(raw)
            check_size(task.query, scope)
        except QuerySpecError as exc:
            raise TaskError(400, str(exc)) from None
        link = self._link_for(factory, task.document_self_link)
        if task.task_info.is_direct:
            return 200, await self._run_direct(factory, link, task, scope, owner_id)
        if link in self._tasks:
            raise TaskError(409, f"a query task already exists at {link}; DELETE it first")
        micros = now_micros()
        expiration = task.document_expiration_time_micros or (
            micros + DEFAULT_EXPIRATION_SECONDS * 1_000_000
        )
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
            await self.store.insert_task(record.row())  # claims the link (all nodes)
        except TaskExists as exc:
            raise TaskError(409, str(exc)) from None
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
        return 202, record.to_json()

    def _link_for(self, factory: str, given: str | None) -> str:
        base = FACTORIES[factory]
        if not given:
            return f"{base}/{secrets.token_hex(8)}"
        task_id = given
        if given.startswith("/"):
            if not given.startswith(base + "/"):
                raise TaskError(
                    400,
                    f"documentSelfLink: {given!r} must be under {base}/ (or give only the id)",
                )
            task_id = given[len(base) + 1 :]
        if not _ID.match(task_id):
            raise TaskError(
                400,
                f"documentSelfLink: {given!r}: a task id is 1-200 letters, digits, '.', '_', "
                "'~' or '-'",
            )
        return f"{base}/{task_id}"

    def _add(self, record: TaskRecord) -> None:
        self._tasks[record.link] = record
        heapq.heappush(self._expiry, (record.expiration_micros, record.link))

    async def _run_direct(
        self, factory: str, link: str, task: QueryTask, scope: Query | None, owner_id: int | None
    ) -> JsonObject:
        micros = now_micros()
        record = TaskRecord(
            link=link,
            factory=factory,
            task=task,
            stage=TaskStage.STARTED,
            expiration_micros=task.document_expiration_time_micros
            or micros + DEFAULT_EXPIRATION_SECONDS * 1_000_000,
            created_micros=micros,
            owner_id=owner_id,
            update_micros=micros,
            scope=scope,
        )
        await self._run_one_shot(record)
        record.duration_micros = now_micros() - micros
        return record.to_json()

    async def _run_one_shot(self, record: TaskRecord) -> None:
        spec = record.effective_spec
        async with snapshot(self.index.db) as (conn, seq):
            results, paged = await execution.run_results(conn, spec, self.dialect)
        if paged is not None:
            assert spec.result_limit is not None
            page_set = self.pages.create(
                record.link,
                paged,
                spec.result_limit,
                expand=record.expand,
                forward_only=spec.has(QueryOption.FORWARD_ONLY),
                expiration_micros=record.expiration_micros,
                seq=seq,
                owner_id=record.owner_id,
            )
            await self.store.insert_page_set(page_set)
            results.update(page_set.navigation(-1))
        record.results = results
        record.snapshot_seq = seq
        record.stage = TaskStage.FINISHED

    async def _start_continuous(self, record: TaskRecord) -> None:
        if record.count:
            record.counters = Counters()
        _, initial = await self.hub.open_stream(
            record.link,
            record.effective_query,
            mode=record.mode,
            observer=record,
            loader=self._loader(record),
        )
        self._set_initial(record, initial)

    def _set_initial(self, record: TaskRecord, initial: list[Initial]) -> None:
        """The task's results after its initial query (all chunks merged)."""
        results: JsonObject = {"documentLinks": []}
        if record.expand:
            results["documents"] = {}
        for message in initial:
            chunk = message.payload
            results["documentLinks"].extend(chunk.get("documentLinks", []))
            if record.expand:
                results["documents"].update(chunk.get("documents", {}))
            if "documentCount" in chunk:
                results["documentCount"] = chunk["documentCount"]
        if record.counters is not None:
            record.counters.count = int(results.get("documentCount") or 0)
            results.update(record.counters.annotation())
        else:
            results["documentCount"] = len(results["documentLinks"])
        record.results = results
        record.snapshot_seq = initial[-1].seq if initial else self.hub.position
        record.state_seq = record.snapshot_seq

    def _loader(self, record: TaskRecord) -> InitialLoader:
        """Reads a continuous task's initial results in a snapshot, in chunks."""
        spec = record.effective_spec
        dialect = self.dialect

        async def load(conn: AsyncConnection) -> list[Any]:
            if spec.has(QueryOption.COUNT):
                count = await execution.count_matches(conn, spec, dialect)
                return [{"documentLinks": [], "documentCount": count}]
            limit = spec.result_limit if spec.has(QueryOption.TOP_RESULTS) else None
            if record.expand:
                links, bodies = await execution.matching_documents(conn, spec, dialect, limit)
            else:
                links = await execution.matching_links(conn, spec, dialect, limit)
                bodies = {}
            chunks: list[Any] = []
            for i in range(0, len(links), INITIAL_CHUNK):
                part = links[i : i + INITIAL_CHUNK]
                chunk: JsonObject = {"documentLinks": part}
                if record.expand:
                    chunk["documents"] = {link: bodies[link] for link in part}
                chunks.append(chunk)
            return chunks or [{"documentLinks": []}]

        return load

    def _loader_for_link(self, link: str) -> InitialLoader:
        return self._loader(self.get(link))

    # --- change ------------------------------------------------------------------------

    async def patch(self, link: str, raw: object) -> JsonObject:
        """PATCH a task: a final stage stops it; documentExpirationTimeMicros moves expiry."""
        record = self.get(link)
        if not isinstance(raw, dict):
            raise TaskError(
                400,
                "body: expected a JSON object with taskInfo.stage or documentExpirationTimeMicros",
            )
        allowed = {"taskInfo", "documentExpirationTimeMicros", "documentSelfLink", "querySpec"}
        unknown = sorted(set(raw) - allowed)
        if "querySpec" in raw and raw["querySpec"] is not None:
            raise TaskError(400, "querySpec: a task's query cannot be changed; create a new task")
        if unknown:
            raise TaskError(
                400,
                f"{unknown[0]}: cannot be changed by PATCH (send taskInfo.stage "
                "or documentExpirationTimeMicros)",
            )
        stage: TaskStage | None = None
        info = raw.get("taskInfo")
        if info is not None:
            if not isinstance(info, dict):
                raise TaskError(400, "taskInfo: expected an object")
            value = info.get("stage")
            if value is not None:
                try:
                    stage = TaskStage(value)
                except ValueError:
                    raise TaskError(
                        400, f"taskInfo.stage: unknown stage {value!r} (use CANCELLED to stop)"
                    ) from None
                if stage not in FINAL_STAGES:
                    raise TaskError(
                        400,
                        f"taskInfo.stage: a task cannot be moved to {stage} (use CANCELLED, "
                        "FINISHED or FAILED)",
                    )
        expiration = raw.get("documentExpirationTimeMicros")
        if expiration is not None and (
            not isinstance(expiration, int) or isinstance(expiration, bool) or expiration < 0
        ):
            raise TaskError(
                400,
                "documentExpirationTimeMicros: expected a non-negative integer "
                "(microseconds since the epoch)",
            )
        if expiration is not None:
            record.expiration_micros = expiration or (
                now_micros() + DEFAULT_EXPIRATION_SECONDS * 1_000_000
            )
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
        found = await self._find_page(page_id)
        if found is None:
            raise TaskError(
                404, f"no query page {page_id}: it expired with its task or never existed"
            )
        page_set, number = found
        links = page_set.page_links(number)
        results: JsonObject = {"documentLinks": links, "documentCount": len(links)}
        if page_set.expand:
            async with self.index.db.connect() as conn:
                bodies = await execution.fetch_bodies(conn, links)
            results["documents"] = {link: bodies[link] for link in links if link in bodies}
        results.update(page_set.navigation(number))
        return _page_json(page_set, page_id, results)

    # --- subscriptions -----------------------------------------------------------------

    async def subscribe(self, link: str, since: int | None) -> Subscription:
        """A stream subscriber of a running continuous task (WebSocket / SSE)."""
        record = self._require_running(link)
        return await self.hub.subscribe(
            link, since=since, loader=self._loader(record) if since is None else None
        )

    def _require_running(self, link: str) -> TaskRecord:
        record = self.get(link)
        if not record.continuous:
            raise TaskError(
                400, f"{link} is not a continuous task: only CONTINUOUS tasks have a stream"
            )
        if not record.running:
            raise TaskError(409, f"{link} is {record.stage.value}: it no longer streams")
        return record

    def format(self, link: str, message: Message) -> JsonObject:
        """A subscription message of a task as JSON (WebSocket, SSE and webhook bodies)."""
        record = self._tasks.get(link)
        return message_json(link, message, expand=record is not None and record.expand)

    async def add_webhook(self, link: str, raw: object) -> WebhookRow:
        """POST .../subscriptions {reference, replayState}."""
        self._require_running(link)
        if not isinstance(raw, dict):
            raise TaskError(400, 'body: expected {"reference": callback URL, "replayState": bool}')
        reference = raw.get("reference")
        if not isinstance(reference, str) or not reference.startswith(("http://", "https://")):
            raise TaskError(400, "reference: expected an http:// or https:// callback URL")
        if len(reference) > 2048:
            raise TaskError(400, "reference: longer than 2048 characters")
        replay = raw.get("replayState", False)
        if not isinstance(replay, bool):
            raise TaskError(400, "replayState: expected true or false")
        row = await self.webhooks.add(link, reference, replay)
        self._changed()
        return row

    async def remove_webhook(self, hook_id: int) -> WebhookRow | None:
        """Unsubscribe; the owner of the deliveries (maybe another node) stops them."""
        row = await self.webhooks.remove(hook_id)
        self._changed()
        return row

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


def _page_json(page_set: PageSet, page_id: str, results: JsonObject) -> JsonObject:
    return {
        "documentSelfLink": f"/core/query-page/{page_id}",
        "taskInfo": {"stage": "FINISHED"},
        "results": results,
        "seq": page_set.seq,
        "documentExpirationTimeMicros": page_set.expiration_micros,
        "indexLink": "/core/document-index",
    }


def decode_json(body: bytes) -> object:
    """A request body as JSON; TaskError 400 naming the problem."""
    if not body:
        raise TaskError(400, "body: expected a JSON object, got an empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TaskError(400, f"body: not valid JSON ({exc})") from None
