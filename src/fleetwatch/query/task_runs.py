"""Running query tasks: one-shot tasks in one snapshot (direct ones too, with their page
sets) and the start of continuous ones, within `query_task_timeout`; a new task's expiry,
and the per-user limit that tasks and the live page sets of direct tasks count against."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fleetwatch.config import Settings
from fleetwatch.index.document import JsonObject, now_micros
from fleetwatch.index.store import DocumentIndex
from fleetwatch.query import execution, one_shot
from fleetwatch.query.pages import PageStore
from fleetwatch.query.snapshot import snapshot
from fleetwatch.query.spec import Query, QuerySpecError, QueryTask
from fleetwatch.query.spec_enums import QueryOption, TaskStage
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.task_initial import initial_loader, set_initial
from fleetwatch.query.task_records import TaskRecord
from fleetwatch.query.task_requests import (
    DEFAULT_EXPIRATION_SECONDS,
    DIRECT_PAGES_SECONDS,
    FACTORIES,
    TaskError,
)
from fleetwatch.query.task_store import TaskStore
from fleetwatch.query.time_travel import snapshot_source
from fleetwatch.storage.interruptible import interruptible


class TaskRuns:
    """The part of `QueryTaskService` that runs one-shot and direct tasks, starts
    continuous ones and holds users to their task limit."""

    index: DocumentIndex
    settings: Settings
    store: TaskStore
    pages: PageStore
    hub: SubscriptionHub
    _tasks: dict[str, TaskRecord]
    #: Per owner, tasks (or direct page sets) being created on this node (not added yet).
    _starting: dict[int, int]
    #: Per owner: one limit check (which reads the store) at a time.
    _limit_locks: dict[int, asyncio.Lock]

    if TYPE_CHECKING:

        @property
        def dialect(self) -> str: ...

    def _expiration(self, given: int | None, micros: int) -> int:
        """A task's expiry: as given (or the default), lowered to at most max_task_lifetime
        from now, so no task, "never" (2**63-1) included, outlives it unattended."""
        latest = micros + int(self.settings.max_task_lifetime * 1_000_000)
        return min(given or micros + DEFAULT_EXPIRATION_SECONDS * 1_000_000, latest)

    @contextlib.asynccontextmanager
    async def _reserve(self, owner_id: int | None) -> AsyncIterator[None]:
        """Hold one of the owner's `max_tasks_per_user` places while a task (or a direct
        task's page set) is made: TaskError 429 when none is left. The place is counted
        until the task is added (the page set stored), so concurrent creates cannot
        overshoot the limit."""
        if owner_id is None:
            yield
            return
        async with self._limit_locks.setdefault(owner_id, asyncio.Lock()):
            await self._check_limit(owner_id)
            self._starting[owner_id] = self._starting.get(owner_id, 0) + 1
        try:
            yield
        finally:
            left = self._starting[owner_id] - 1
            if left:
                self._starting[owner_id] = left
            else:
                del self._starting[owner_id]

    async def _check_limit(self, owner_id: int) -> None:
        """TaskError 429 when the user already holds max_tasks_per_user tasks, counting
        the live result page sets of their direct tasks."""
        limit = self.settings.max_tasks_per_user
        standing = sum(1 for record in self._tasks.values() if record.owner_id == owner_id)
        held = self._starting.get(owner_id, 0) + standing
        if held < limit:
            # a standing task's pages are counted with it; the others are direct tasks'
            page_tasks = await self.store.live_page_set_tasks(owner_id, now_micros())
            held += sum(1 for link in page_tasks if link not in self._tasks)
        if held >= limit:
            raise TaskError(
                429,
                f"you have {held} query tasks and result page sets of direct tasks, the most "
                f"one user may hold (max_tasks_per_user = {limit}); DELETE tasks you no longer "
                f"need (GET {FACTORIES['query-tasks']} and {FACTORIES['local-query-tasks']} "
                "list yours) or wait for them to expire (a direct task's pages expire at most "
                f"{DIRECT_PAGES_SECONDS} s after it ran)",
            )

    async def _run_direct(
        self, factory: str, link: str, task: QueryTask, scope: Query | None, owner_id: int | None
    ) -> JsonObject:
        """Run a direct task; with pages, it holds one of the owner's places while they
        last (at most DIRECT_PAGES_SECONDS: nobody can delete them)."""
        if not execution.is_paged(task.spec):
            return await self._run_direct_now(factory, link, task, scope, owner_id)
        async with self._reserve(owner_id):
            return await self._run_direct_now(factory, link, task, scope, owner_id)

    async def _run_direct_now(
        self, factory: str, link: str, task: QueryTask, scope: Query | None, owner_id: int | None
    ) -> JsonObject:
        micros = now_micros()
        expiration = min(
            self._expiration(task.document_expiration_time_micros, micros),
            micros + DIRECT_PAGES_SECONDS * 1_000_000,
        )
        record = TaskRecord(
            link=link,
            factory=factory,
            task=task,
            stage=TaskStage.STARTED,
            expiration_micros=expiration,
            created_micros=micros,
            owner_id=owner_id,
            update_micros=micros,
            scope=scope,
        )
        await self._run_one_shot(record)
        record.duration_micros = now_micros() - micros
        return record.to_json()

    @contextlib.asynccontextmanager
    async def _time_limit(self) -> AsyncIterator[None]:
        """Stop a task's query in the database after `query_task_timeout` (issue 14)."""
        limit = self.settings.query_task_timeout
        try:
            async with asyncio.timeout(limit):
                yield
        except TimeoutError:
            raise TaskError(
                400,
                f"querySpec.query: the query ran longer than {limit:g} s in the database and "
                "was stopped (query_task_timeout); narrow it, e.g. with a documentKind TERM",
            ) from None

    async def _run_one_shot(self, record: TaskRecord) -> None:
        spec = record.effective_spec
        async with self._time_limit(), snapshot(self.index.db) as (conn, seq):
            owner = one_shot.PageOwner(
                task_link=record.link,
                expand=record.expand,
                forward_only=spec.has(QueryOption.FORWARD_ONLY),
                expiration_micros=record.expiration_micros,
                seq=seq,
                owner_id=record.owner_id,
            )
            try:
                ran = await interruptible(
                    conn, one_shot.run(conn, spec, self.dialect, self.pages, owner, record.scope)
                )
            except QuerySpecError as exc:  # e.g. a boundary older than the history
                raise TaskError(400, str(exc)) from None
        await self.store.insert_page_sets(ran.page_sets)
        record.results = ran.results
        record.snapshot_seq = seq
        record.stage = TaskStage.FINISHED

    async def _start_continuous(self, record: TaskRecord) -> None:
        record.start_counting()
        spec = record.effective_spec
        async with self._time_limit():
            if spec.has(QueryOption.TIME_SNAPSHOT):
                assert spec.time_snapshot_boundary_micros is not None
                async with snapshot(self.index.db) as (conn, _):
                    try:
                        source = await snapshot_source(conn, spec.time_snapshot_boundary_micros)
                    except QuerySpecError as exc:  # older than the history
                        raise TaskError(400, str(exc)) from None
                record.as_of_seq = source.as_of_seq
            await self.hub.open_stream(
                record.link,
                record.effective_query,
                mode=record.mode,
                observer=record,
                loader=initial_loader(record, self.dialect),
                as_of=record.as_of_seq,
                initialize=lambda initial: set_initial(record, initial, self.hub.position),
                squash_millis=record.squash_millis,
            )
        # the observer has seen every change up to here (a boundary's replay included)
        record.state_seq = self.hub.position
