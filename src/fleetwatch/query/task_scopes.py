"""Keeping running tasks within their owner's current scope.

A task's scope is what its owner's roles let them see (see `fleetwatch.query.scope`). Roles
change and users are deleted, so the scope stored with the task is only a cache: the service
asks `owner_scopes` (a callback, since this package must not know users) for each owner's
scope now, on resume, on adoption, every `SCOPE_CHECK_INTERVAL` and when the user service
says an owner's roles changed. A running task whose owner's scope differs restarts inside
the new one: its stream closes (subscribers get Closed and reconnect), its initial results
are read afresh, its webhooks resubscribe from their cursors and its state is saved with the
new scope. A task whose owner is gone is
cancelled. Every node reads the same users table, so each reaches the same answer alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from fleetwatch.query.scope import scope_json
from fleetwatch.query.spec import Query
from fleetwatch.query.spec_enums import TaskStage
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.task_records import TaskRecord
from fleetwatch.query.webhooks import WebhookDispatcher

# The service's logger: its messages keep the name operators filter on.
log = logging.getLogger("fleetwatch.query.tasks")

#: The scope of each owner that still exists (an owner missing from the answer is gone;
#: a value of None is an owner who may see the whole index).
OwnerScopes = Callable[[Collection[int]], Awaitable[Mapping[int, Query | None]]]
#: How often every node compares its running tasks' scopes with their owners' (seconds).
SCOPE_CHECK_INTERVAL = 5.0
#: Why a deleted owner's task stopped (the reason the user API always gave).
OWNER_DELETED = "the user was deleted"
#: Why a re-scoped task's subscribers were closed.
RESCOPED = "the owner's roles changed: the task restarted within its new scope; reconnect"


def _same(a: Query | None, b: Query | None) -> bool:
    if a is None or b is None:
        return a is b
    return scope_json(a) == scope_json(b)


def end_for_deleted_owner(record: TaskRecord) -> None:
    """Cancel a task whose owner no longer exists (saved by the next flush)."""
    record.stage = TaskStage.CANCELLED
    record.failure = {"message": OWNER_DELETED}
    record.touch()


def rescope(record: TaskRecord, scope: Query | None) -> None:
    """Give a record its owner's new scope and forget what the old one decided: the
    compiled scope and spec, the results, the counters and the snapshot, so it starts
    afresh with a new initial snapshot (saved with the new scope by the next flush)."""
    record.scope = scope
    for cached in ("effective_spec", "compiled_scope"):
        record.__dict__.pop(cached, None)
    record.results = {}
    record.snapshot_seq = -1
    record.state_seq = -1
    record.counters = None
    record.group_counts = None
    record.counts_moved = False
    record.start_counting()
    record.touch()


class TaskScopes:
    """The part of `QueryTaskService` that holds running tasks to their owner's scope."""

    hub: SubscriptionHub
    webhooks: WebhookDispatcher
    owner_scopes: OwnerScopes | None
    _tasks: dict[str, TaskRecord]
    _sync_lock: asyncio.Lock

    if TYPE_CHECKING:

        async def _resume(self, record: TaskRecord, checkpoint: int | None) -> None: ...

    async def _scopes_of(self, records: Iterable[TaskRecord]) -> Mapping[int, Query | None] | None:
        """The current scope of these records' owners (None: no callback, nothing to do)."""
        owners = {r.owner_id for r in records if r.owner_id is not None and r.running}
        if self.owner_scopes is None or not owners:
            return None
        return await self.owner_scopes(owners)

    async def _rescope_loaded(self, records: list[TaskRecord]) -> None:
        """Before resuming stored tasks: each running one gets its owner's current scope
        (resumed afresh if it changed), or is cancelled if its owner is gone."""
        scopes = await self._scopes_of(records)
        if scopes is None:
            return
        for record in records:
            if record.owner_id is None or not record.running:
                continue
            if record.owner_id not in scopes:
                end_for_deleted_owner(record)
            elif not _same(record.scope, scopes[record.owner_id]):
                rescope(record, scopes[record.owner_id])

    async def check_scopes(self, owner_ids: Collection[int] | None = None) -> int:
        """Restart each running task (of `owner_ids`, or all) whose owner's scope changed,
        and cancel those whose owner is gone; returns how many changed."""
        async with self._sync_lock:  # not while `sync` adopts or resumes tasks
            records = [
                r for r in self._tasks.values() if owner_ids is None or r.owner_id in owner_ids
            ]
            scopes = await self._scopes_of(records)
            if scopes is None:
                return 0
            changed = 0
            for record in records:
                if record.owner_id is None or not record.running:
                    continue
                if record.owner_id not in scopes:
                    end_for_deleted_owner(record)
                    await self.hub.close_stream(record.link, OWNER_DELETED)
                    changed += 1
                elif not _same(record.scope, scopes[record.owner_id]):
                    await self.hub.close_stream(record.link, RESCOPED)
                    rescope(record, scopes[record.owner_id])
                    await self._resume(record, None)
                    await self.webhooks.restart_task(record.link)
                    changed += 1
            return changed

    async def owner_changed(self, owner_id: int) -> None:
        """The user service changed `owner_id`'s roles (or deleted them): check their tasks
        now; a failure is logged (the periodic check tries again)."""
        try:
            await self.check_scopes([owner_id])
        except Exception:
            log.exception("re-scoping the query tasks of user %s failed; retried soon", owner_id)
