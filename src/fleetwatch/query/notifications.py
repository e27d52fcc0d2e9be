"""The JSON of a query task's notifications, the same for WebSocket, SSE and webhooks.

Each message is QueryTask-shaped (Xenon subscribers read `results.documentLinks` /
`results.documents` and each document's `documentUpdateAction`) plus fleetwatch's fields:

- `type`: `initial` (the initial results, one or more messages, the last with
  `"last": true`), `change` (one per matching create, update or delete, or a document that
  stopped matching), `resync` (the subscriber fell behind: resume with `since=seq`) or
  `closed` (the task was cancelled, deleted or expired).
- `seq`: the change-log sequence; resume after it with `?since=seq` or `Last-Event-ID`.
- on a change: `event` (added, updated, deleted, stopMatch), `documentUpdateAction`,
  `stopMatch` (true when the document left the result set without being deleted) and
  `reason` (why it left: deleted or no longer matches).
"""

from __future__ import annotations

from fleetwatch.index.document import JsonObject
from fleetwatch.query.subscriptions import (
    Closed,
    EventKind,
    Initial,
    Message,
    Notification,
    Resync,
)


def message_json(task_link: str, message: Message, *, expand: bool) -> JsonObject:
    """The JSON of one subscription message of the task at `task_link`."""
    if isinstance(message, Initial):
        results = message.payload if isinstance(message.payload, dict) else {}
        return {
            "type": "initial",
            "seq": message.seq,
            "last": message.last,
            "documentSelfLink": task_link,
            "taskInfo": {"stage": "STARTED"},
            "results": results,
        }
    if isinstance(message, Notification):
        return change_json(task_link, message, expand=expand)
    if isinstance(message, Resync):
        return {
            "type": "resync",
            "seq": message.seq,
            "documentSelfLink": task_link,
            "reason": "the subscriber fell too far behind; resume with since=seq",
        }
    assert isinstance(message, Closed)
    return {
        "type": "closed",
        "seq": message.seq,
        "documentSelfLink": task_link,
        "reason": message.reason,
    }


def change_json(task_link: str, note: Notification, *, expand: bool) -> JsonObject:
    """One matching change as a QueryTask-shaped notification."""
    change = note.event.change
    results: JsonObject = {"documentLinks": [change.self_link]}
    if expand:
        results["documents"] = {change.self_link: change.body}
    if note.annotation:
        results.update(note.annotation)
    body: JsonObject = {
        "type": "change",
        "seq": note.seq,
        "documentSelfLink": task_link,
        "taskInfo": {"stage": "STARTED"},
        "results": results,
        "event": note.event.kind.value,
        "documentUpdateAction": change.action.value,
        "stopMatch": note.event.kind is EventKind.STOP_MATCH,
    }
    if note.event.reason is not None:
        body["reason"] = note.event.reason
    return body
