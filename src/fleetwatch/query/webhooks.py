"""Webhook subscriptions: each notification of a task is PATCHed to a callback URL.

One worker per subscription reads the task's stream through the subscription hub and
delivers in sequence order, one request at a time, retrying a failed delivery with
exponential backoff; after `failure_limit` consecutive failures the subscription is dropped
and the reason recorded. The worker's cursor (the last sequence delivered) is persisted, so
after a restart, or after it fell behind and got a resync, it resumes from the change log
without loss. Delivery is at least once: a crash between a delivery and the next save may
repeat a notification, which its `seq` identifies.

A kind of task may deliver differently (`Delivery`, registered for a link prefix): its own
body per notification (or none: the cursor moves on without a request), HTTP method, and
no dropping (a policy's failing/passing events are retried for as long as it takes, so
each reaches its receiver at least once). The machinery (order, cursor, backoff, lease,
outbound guard) is the same for every kind.

On a cluster one node delivers: the holder of the webhooks lease (`may_deliver` is checked
before every attempt, so a node that lost its lease stops at once), and it records each
delivery before the next one (`durable`), so its successor repeats at most the one
notification in flight when the owner died.

Isolation: each worker has a bounded queue in the hub and sends one request at a time,
so a callback that hangs or fails delays only its own subscription, never the index
writer, other subscriptions or other tasks. The workers share one HTTP client (one
connection pool, one TLS context), so a subscription costs a task and a queue, not a
client.

Callback URLs are aimed by users, so every connection goes through `OutboundGuard`: inside
addresses are refused unless the operator allows them (`outbound_allow`), checked again
at connect time, and redirects are not followed. A failure reason tells the user only
`failed` or why the policy `refused` the address, never what the callback answered (a
status or connection error would make the server a port scanner of its own network); the
details are logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

from fleetwatch.index.document import JsonObject, now_micros
from fleetwatch.outbound import OutboundGuard, OutboundRefused
from fleetwatch.outbound.backoff import retry_delay
from fleetwatch.query.stream_messages import (
    Closed,
    Initial,
    Message,
    ResumeTooOld,
    Resync,
    SubscriptionError,
)
from fleetwatch.query.subscriptions import InitialLoader, SubscriptionHub
from fleetwatch.query.task_store import TaskStore, WebhookRow

log = logging.getLogger(__name__)

#: Longest wait between two attempts of one delivery.
MAX_BACKOFF = 30.0
#: Connections the shared client keeps open at most (each worker uses one at a time).
MAX_CONNECTIONS = 256
#: Idle connections kept for reuse.
MAX_KEEPALIVE = 64

Formatter = Callable[[str, Message], JsonObject]
#: A task kind's body of a message, or None when the message is no event for its receivers.
EventFormatter = Callable[[str, Message], JsonObject | None]
LoaderFor = Callable[[str], InitialLoader]


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    failure_limit: int = 5
    retry_base: float = 0.5
    timeout: float = 10.0
    #: Subscriptions one task may have.
    max_per_task: int = 20


@dataclass(frozen=True, slots=True)
class Delivery:
    """How the webhooks of one kind of task deliver (see the module docstring)."""

    format: EventFormatter
    method: str = "PATCH"
    #: Drop the subscription after `failure_limit` consecutive failures (False: retry on).
    drops: bool = True


class WebhookDispatcher:
    """Runs one delivery worker per active webhook subscription."""

    def __init__(
        self,
        hub: SubscriptionHub,
        store: TaskStore,
        policy: WebhookPolicy,
        formatter: Formatter,
        loader_for: LoaderFor,
        guard: OutboundGuard | None = None,
    ) -> None:
        self.hub = hub
        #: Which callback addresses may be called (nothing inside without outbound_allow).
        self.guard = guard or OutboundGuard()
        self.store = store
        self.policy = policy
        self.default = Delivery(formatter)
        #: (link prefix, delivery) of the task kinds that deliver their own way.
        self._kinds: list[tuple[str, Delivery]] = []
        self.loader_for = loader_for
        self._rows: dict[int, WebhookRow] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._client: httpx.AsyncClient | None = None
        #: Called with "delivered", "failed" or "dropped" per attempt outcome (ops hook).
        self.on_delivery: Callable[[str], None] | None = None
        #: Whether this node may deliver now (a cluster: it holds the webhooks lease).
        self.may_deliver: Callable[[], bool] = lambda: True
        #: Save the cursor after every delivery instead of with the periodic flush.
        self.durable = False

    # --- registry ----------------------------------------------------------------------

    def register(self, prefix: str, delivery: Delivery) -> None:
        """Tasks whose link starts with `prefix` deliver with `delivery` (register before
        `start`, so no worker delivers one of them the default way)."""
        self._kinds.append((prefix, delivery))

    def delivery(self, task_link: str) -> Delivery:
        for prefix, delivery in self._kinds:
            if task_link.startswith(prefix):
                return delivery
        return self.default

    def for_task(self, task_link: str) -> list[WebhookRow]:
        return [r for r in self._rows.values() if r.task_link == task_link]

    def get(self, hook_id: int) -> WebhookRow | None:
        return self._rows.get(hook_id)

    @property
    def active_workers(self) -> int:
        return sum(1 for t in self._workers.values() if not t.done())

    async def add(self, task_link: str, reference: str, replay_state: bool) -> WebhookRow:
        """Subscribe `reference`; with replayState the task's current results come first.

        Delivered from here if this node may deliver; otherwise the owner picks it up."""
        start = None if replay_state else self.hub.position
        row = await self.store.insert_webhook(task_link, reference, replay_state, start)
        self._rows[row.id] = row
        if self.may_deliver():
            self._spawn(row)
        return row

    def release(self) -> None:
        """This node stopped delivering (lost its lease): stop every worker."""
        for task in self._workers.values():
            task.cancel()
        self._workers.clear()
        self._dirty.clear()

    async def remove(self, hook_id: int) -> WebhookRow | None:
        row = self._rows.pop(hook_id, None)
        if row is None:
            return None
        await self._cancel(hook_id)
        await self.store.delete_webhook(hook_id)
        return row

    async def forget_task(self, task_link: str) -> None:
        """Stop the workers of a deleted task (its rows are deleted with the task)."""
        for row in self.for_task(task_link):
            self._rows.pop(row.id, None)
            self._dirty.discard(row.id)
            await self._cancel(row.id)

    async def restart_task(self, task_link: str) -> None:
        """Resubscribe a task's active subscriptions from their cursors (its stream was
        reopened, e.g. within its owner's new scope, and their workers were told Closed)."""
        for row in self.for_task(task_link):
            await self._cancel(row.id)
            if row.state == "active" and self.may_deliver():
                self._spawn(row)

    def restore(self, rows: list[WebhookRow], running: Callable[[str], bool]) -> None:
        """Make the registry what the store holds; deliver the active subscriptions of
        running tasks if this node may (at start, and whenever another node changed them)."""
        stored = {row.id for row in rows}
        for hook_id in [i for i in self._rows if i not in stored]:
            del self._rows[hook_id]  # removed on another node
            worker = self._workers.pop(hook_id, None)
            if worker is not None:
                worker.cancel()
        for row in rows:
            worker = self._workers.get(row.id)
            if worker is not None and not worker.done():
                continue  # delivering: its cursor is newer than the stored one
            self._rows[row.id] = row
            if row.state == "active" and running(row.task_link) and self.may_deliver():
                self._spawn(row)

    def take_dirty(self) -> list[WebhookRow]:
        """Subscriptions changed since the last call (for the flusher)."""
        rows = [self._rows[i] for i in self._dirty if i in self._rows]
        self._dirty.clear()
        return rows

    def put_back_dirty(self, rows: list[WebhookRow]) -> None:
        """Rows `take_dirty` returned whose save failed: saved by the next flush."""
        self._dirty.update(row.id for row in rows if row.id in self._rows)

    async def stop(self) -> None:
        for hook_id in list(self._workers):
            await self._cancel(hook_id)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def client(self) -> httpx.AsyncClient:
        """The HTTP client every worker delivers with (made on first use)."""
        if self._client is None:
            self._client = self.guard.client(
                self.policy.timeout,
                httpx.Limits(
                    max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE
                ),
            )
        return self._client

    # --- workers -----------------------------------------------------------------------

    def _spawn(self, row: WebhookRow) -> None:
        self._workers[row.id] = asyncio.create_task(
            self._run(row), name=f"fleetwatch-webhook-{row.id}"
        )

    async def _cancel(self, hook_id: int) -> None:
        task = self._workers.pop(hook_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _mark(self, row: WebhookRow) -> None:
        row.updated_micros = now_micros()
        self._dirty.add(row.id)

    async def _run(self, row: WebhookRow) -> None:
        client = self.client()
        delivery = self.delivery(row.task_link)
        while row.state == "active":
            since = row.last_delivered_seq
            try:
                sub = await self.hub.subscribe(
                    row.task_link,
                    since=since,
                    loader=self.loader_for(row.task_link) if since is None else None,
                )
            except ResumeTooOld as exc:
                await self._drop(row, str(exc))
                return
            except SubscriptionError:
                return  # the task is no longer running
            try:
                async for message in sub:
                    if isinstance(message, Resync):
                        break  # resubscribe from the last delivered sequence
                    if isinstance(message, Closed):
                        return
                    body = delivery.format(row.task_link, message)
                    if body is not None and not await self._deliver(client, row, body, delivery):
                        return
                    if not isinstance(message, Initial) or message.last:
                        row.last_delivered_seq = message.seq
                        self._mark(row)
                        # nothing sent, nothing to repeat: the flusher saves the cursor
                        durable = self.durable and body is not None
                        if durable and not await self._save_cursor(row):
                            return
            finally:
                await sub.aclose()

    async def _deliver(
        self, client: httpx.AsyncClient, row: WebhookRow, body: JsonObject, delivery: Delivery
    ) -> bool:
        """Send one notification until it is accepted; False once the subscription dropped
        (or this node may no longer deliver)."""
        content = orjson.dumps(body)
        failures = 0
        while True:
            if not self.may_deliver():
                return False  # another node delivers from now on
            try:
                reply = await client.request(
                    delivery.method,
                    row.reference,
                    content=content,
                    headers={
                        "content-type": "application/json",
                        "x-fleetwatch-seq": str(body["seq"]),
                    },
                )
                if 200 <= reply.status_code < 300:
                    if self.on_delivery is not None:
                        self.on_delivery("delivered")
                    row.delivered_count += 1
                    if row.failure_count:
                        row.failure_count = 0
                    self._mark(row)
                    return True
                log.debug("webhook %s: callback answered HTTP %s", row.id, reply.status_code)
                reason = "failed"
            except OutboundRefused as exc:
                reason = f"refused: {exc}"
            except httpx.HTTPError as exc:
                log.debug("webhook %s: delivery failed: %s %s", row.id, type(exc).__name__, exc)
                reason = "failed"
            failures += 1
            if self.on_delivery is not None:
                self.on_delivery("failed")
            row.failure_count = failures
            row.failure_reason = reason
            self._mark(row)
            if delivery.drops and failures >= self.policy.failure_limit:
                await self._drop(
                    row,
                    f"dropped after {failures} consecutive failed deliveries; last: {reason}",
                )
                return False
            await asyncio.sleep(retry_delay(self.policy.retry_base, failures, MAX_BACKOFF))

    async def _save_cursor(self, row: WebhookRow) -> bool:
        """Save the cursor now; False when the subscription was removed meanwhile."""
        while True:
            try:
                # Shielded: a worker cancelled mid-save (lease lost, shutdown) still
                # finishes the write instead of cutting its transaction short.
                if await asyncio.shield(self.store.save_cursor(row)):
                    self._dirty.discard(row.id)
                    return True
                return False
            except Exception as exc:  # the database is briefly away: do not deliver further
                log.warning("saving webhook cursor %s failed (%s); retrying", row.id, exc)
                await asyncio.sleep(0.5)

    async def _drop(self, row: WebhookRow, reason: str) -> None:
        if self.on_delivery is not None:
            self.on_delivery("dropped")
        row.state = "dropped"
        row.failure_reason = reason
        self._mark(row)
        log.warning("webhook subscription %s of %s dropped: %s", row.id, row.task_link, reason)
        try:
            await asyncio.shield(self.store.save([], [row], None))
            self._dirty.discard(row.id)
        except Exception:  # the flusher will retry the save
            log.exception("could not save the dropped webhook subscription %s", row.id)
