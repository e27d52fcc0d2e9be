"""A query task's subscribers: stream subscribers of a running continuous task (WebSocket,
SSE), its messages as JSON, and its webhook subscriptions (their limits and the outbound
policy checked when one is added)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fleetwatch.index.document import JsonObject
from fleetwatch.outbound import OutboundRefused, OutboundUnresolved
from fleetwatch.query.notifications import message_json
from fleetwatch.query.stream_messages import Message
from fleetwatch.query.subscription import Subscription
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.task_initial import initial_loader
from fleetwatch.query.task_records import TaskRecord
from fleetwatch.query.task_requests import TaskError, parse_webhook
from fleetwatch.query.task_store import WebhookRow
from fleetwatch.query.webhooks import WebhookDispatcher


class TaskSubscriptions:
    """The part of `QueryTaskService` that subscribes streams and webhooks to its tasks."""

    hub: SubscriptionHub
    webhooks: WebhookDispatcher
    _tasks: dict[str, TaskRecord]
    #: One subscription at a time: the per-task limit and the duplicate check hold.
    _subscribe_lock: asyncio.Lock

    if TYPE_CHECKING:

        @property
        def dialect(self) -> str: ...

        def get(self, link: str, owner_id: int | None = None) -> TaskRecord: ...

        def _changed(self) -> None: ...

    async def subscribe(self, link: str, since: int | None) -> Subscription:
        """A stream subscriber of a running continuous task (WebSocket / SSE)."""
        record = self._require_running(link)
        return await self.hub.subscribe(
            link,
            since=since,
            loader=initial_loader(record, self.dialect, cursors=True) if since is None else None,
            markers=True,
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
        if record is None:
            return message_json(link, message, expand=False)
        return message_json(link, message, expand=record.expand, shown=record.shown_document)

    async def add_webhook(self, link: str, raw: object) -> WebhookRow:
        """POST .../subscriptions {reference, replayState}.

        400 for a callback address the outbound policy refuses (checked again at every
        connection), 409 when the task already has a subscription of that URL, 429 past
        `max_webhooks_per_task`."""
        self._require_running(link)
        reference, replay = parse_webhook(raw)
        return await self.subscribe_webhook(link, reference, replay)

    async def subscribe_webhook(self, link: str, reference: str, replay: bool) -> WebhookRow:
        """Subscribe `reference` to the running task at `link` (see `add_webhook`); the
        other nodes are told, so whichever holds the webhooks lease delivers it."""
        self._require_running(link)
        async with self._subscribe_lock:
            existing = self.webhooks.for_task(link)
            same = [r for r in existing if r.reference == reference]
            if same:
                raise TaskError(
                    409,
                    f"reference: {link} already has subscription {same[0].id} of this URL "
                    f"({same[0].state}); DELETE {link}/subscriptions/{same[0].id} first to "
                    "subscribe it again",
                )
            limit = self.webhooks.policy.max_per_task
            if len(existing) >= limit:
                raise TaskError(
                    429,
                    f"{link} has {len(existing)} webhook subscriptions, the most one task may "
                    f"have (max_webhooks_per_task = {limit}); DELETE one "
                    f"({link}/subscriptions/{{id}}) before adding another",
                )
            try:
                await self.webhooks.guard.check_url(reference, self.webhooks.policy.timeout)
            except (OutboundRefused, OutboundUnresolved) as exc:
                raise TaskError(400, f"reference: {exc}") from None
            row = await self.webhooks.add(link, reference, replay)
        self._changed()
        return row

    async def remove_webhook(self, hook_id: int) -> WebhookRow | None:
        """Unsubscribe; the owner of the deliveries (maybe another node) stops them."""
        row = await self.webhooks.remove(hook_id)
        self._changed()
        return row
