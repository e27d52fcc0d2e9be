"""Failing/passing events of policies: ordinary query task webhooks with an event formatter.

Each policy has a standing continuous task of the server's own (`QueryTaskService.
ensure_system`) over its failing results (`documentKind = fleet:policy-result AND policy_id
= N AND response = fail`) with CONTINUOUS_STOP_MATCH: a host entering the set is `failing`,
one leaving it with a `pass` answer is `passing` (leaving it to unknown, a changed query or
an error, is no event). A host's first answer is an event only if it fails (it enters the
set; a pass never was in it).

A policy's webhook is a subscription of that task, delivered by the task webhooks'
dispatcher (`fleetwatch.query.webhooks`) with this module's `Delivery`: each event POSTed as
`{"event", "policy", "host", "previous", "seq"}`, nothing for other notifications, and never
dropped. So the policy events get what every task webhook has: at least once, in sequence
order per policy, retried with backoff, the same `seq` (the change-log sequence of the
answer) on a repeat after a restart, the outbound guard, one deliverer on a cluster (the
`webhooks` lease), and a subscription added on one node announced to the others.

With log forwarding configured (`on_event`), every event also goes to the operations' log
destinations (log type `policy`), from a subscriber per policy that starts at the live end
and keeps no cursor: forwarding is best effort, like the forwarding of agents' logs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from fleetwatch.fleet.errors import Conflict, Invalid
from fleetwatch.policies.model import FAIL, PASS, RESULT_KIND, Policy
from fleetwatch.query.scope import all_of, term
from fleetwatch.query.stream_events import EventKind
from fleetwatch.query.stream_messages import (
    Closed,
    Message,
    Notification,
    Resync,
    SubscriptionError,
)
from fleetwatch.query.task_requests import SYSTEM_BASE, TaskError, system_link
from fleetwatch.query.task_store import WebhookRow
from fleetwatch.query.tasks import QueryTaskService
from fleetwatch.query.webhooks import Delivery

#: Webhooks one policy may have.
MAX_PER_POLICY = 20
#: The name of a policy's standing task starts so (then the policy id).
TASK_PREFIX = "policy-failing-"


def task_name(policy_id: int) -> str:
    return f"{TASK_PREFIX}{policy_id}"


def failing_task(policy_id: int) -> dict[str, Any]:
    """The standing task of a policy's failing hosts (a QueryTask body)."""
    query = all_of(
        term("documentKind", RESULT_KIND), term("policy_id", policy_id), term("response", FAIL)
    )
    return {
        "taskInfo": {"isDirect": False},
        "querySpec": {
            "query": query.model_dump(mode="json", by_alias=True, exclude_none=True),
            "options": ["CONTINUOUS", "CONTINUOUS_STOP_MATCH"],
        },
    }


def policy_of_link(link: str) -> int | None:
    """The policy id of a policy task's link."""
    name = link.rsplit("/", 1)[-1]
    suffix = name[len(TASK_PREFIX) :]
    return int(suffix) if name.startswith(TASK_PREFIX) and suffix.isdigit() else None


def event_of(policy: Policy | None, note: Notification) -> dict[str, Any] | None:
    """The event a change of the failing set is, or None (see the module docstring)."""
    change = note.event.change
    body = change.body
    if note.event.kind is EventKind.ADDED:
        kind = "failing"
        previous = str((change.prev_body or {}).get("response") or "")
    elif note.event.kind is EventKind.STOP_MATCH and body.get("response") == PASS:
        kind, previous = "passing", FAIL
    else:
        return None
    policy_id = int(body.get("policy_id") or 0)
    return {
        "event": kind,
        "policy": {"id": policy_id, "name": policy.name if policy is not None else ""},
        "host": {
            "id": body.get("host_id"),
            "hostname": body.get("hostname"),
            "team_id": body.get("team_id"),
        },
        "previous": previous,
        "seq": note.seq,
    }


def webhook_json(row: WebhookRow) -> dict[str, Any]:
    """A policy webhook as the API shows it."""
    return {
        "id": row.id,
        "policy_id": policy_of_link(row.task_link),
        "url": row.reference,
        "last_seq": row.last_delivered_seq,
        "failures": row.failure_count,
        "state": row.state,
    }


class PolicyAutomations:
    """One standing task per policy; its webhooks are the task's."""

    def __init__(self, tasks: QueryTaskService, book: dict[int, Policy]) -> None:
        self.tasks = tasks
        self.book = book
        self._forwarders: dict[int, asyncio.Task[None]] = {}
        #: Called with every event, on the webhooks lease holder (ops hook: log forwarding).
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        # before the task service starts: no worker ever delivers a policy task's way
        tasks.webhooks.register(
            f"{SYSTEM_BASE}/{TASK_PREFIX}", Delivery(self.format, method="POST", drops=False)
        )

    def format(self, link: str, message: Message) -> dict[str, Any] | None:
        """The event a message of a policy's task is (None: no event, nothing is sent)."""
        policy_id = policy_of_link(link)
        if policy_id is None or not isinstance(message, Notification):
            return None
        return event_of(self.book.get(policy_id), message)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        for policy_id in list(self.book):
            await self._open(policy_id)

    async def stop(self) -> None:
        for policy_id in list(self._forwarders):
            await self._stop_forwarding(policy_id)

    async def _open(self, policy_id: int) -> str:
        link = await self.tasks.ensure_system(task_name(policy_id), failing_task(policy_id))
        if self.on_event is not None and policy_id not in self._forwarders:
            self._forwarders[policy_id] = asyncio.create_task(
                self._forward(policy_id, link), name=f"fleetwatch-policy-forward-{policy_id}"
            )
        return link

    async def policy_changed(self, policy_id: int) -> None:
        """Start the task of a new policy; remove a deleted one's (its webhooks go too)."""
        if policy_id in self.book:
            await self._open(policy_id)
            return
        await self._stop_forwarding(policy_id)
        await self.tasks.remove_system(task_name(policy_id), "the policy was deleted")

    async def _stop_forwarding(self, policy_id: int) -> None:
        task = self._forwarders.pop(policy_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forward(self, policy_id: int, link: str) -> None:
        """Every event of the policy to the log destinations (see the module docstring)."""
        since: int | None = None
        while True:
            try:
                sub = await self.tasks.hub.subscribe(link, since=since)
            except SubscriptionError:
                return
            try:
                async for message in sub:
                    if isinstance(message, Resync):
                        since = message.seq  # fell behind: catch up from the log
                        break
                    if isinstance(message, Closed):
                        return
                    if not self.tasks.webhook_lease.held:
                        continue
                    event = self.format(link, message)
                    if event is not None and self.on_event is not None:
                        self.on_event(event)
            finally:
                await sub.aclose()

    # --- webhooks ----------------------------------------------------------------------

    def webhooks(self, policy_id: int) -> list[WebhookRow]:
        return sorted(
            self.tasks.webhooks.for_task(system_link(task_name(policy_id))), key=lambda h: h.id
        )

    async def add(self, policy_id: int, url: str) -> WebhookRow:
        """Subscribe `url` to the policy's events from now on. OutboundRefused or
        OutboundUnresolved when the address may not be called; Conflict for a URL the
        policy already has; Invalid past MAX_PER_POLICY."""
        hooks = self.webhooks(policy_id)
        same = [h for h in hooks if h.reference == url]
        if same:
            raise Conflict(
                f"policy {policy_id} already has webhook {same[0].id} of this URL; DELETE "
                f"/api/v1/fleet/policies/{policy_id}/webhooks/{same[0].id} first"
            )
        if len(hooks) >= MAX_PER_POLICY:
            raise Invalid(f"a policy has at most {MAX_PER_POLICY} webhooks: delete one first")
        webhooks = self.tasks.webhooks
        await webhooks.guard.check_url(url, webhooks.policy.timeout)
        link = await self._open(policy_id)
        try:
            return await self.tasks.subscribe_webhook(link, url, False)
        except TaskError as exc:  # added meanwhile by another request
            raise (Conflict if exc.status == 409 else Invalid)(exc.message) from None

    async def remove(self, hook_id: int) -> None:
        await self.tasks.remove_webhook(hook_id)
