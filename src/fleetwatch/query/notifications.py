"""The JSON of a query task's notifications, the same for WebSocket, SSE and webhooks.

Each message is QueryTask-shaped (Xenon subscribers read `results.documentLinks` /
`results.documents` and each document's `documentUpdateAction`) plus fleetwatch's fields:

- `type`: `initial` (the initial results, one or more messages, the last with
  `"last": true`), `current` (caught up: the subscriber holds everything up to `seq`; sent
  after the initial results and after a resume's replay), `change` (one per matching create,
  update or delete, or a document that stopped matching), `resync` (the subscriber fell
  behind: resume with `since=seq`) or `closed` (the task was cancelled, deleted or expired).
- `seq`: the change-log sequence, a cursor: resume after it with `?since=seq` or
  `Last-Event-ID`. The initial results are sent in the order of the documents' last writes,
  so an `initial` message's seq is that of its newest document (the snapshot's sequence on
  the last one).
- on a change: `event` (added, updated, deleted, stopMatch), `documentUpdateAction`,
  `stopMatch` (true when the document left the result set without being deleted) and
  `reason` (why it left: deleted or no longer matches). An expired document is reported
  exactly like a delete (`event` deleted, `documentUpdateAction` DELETE) with `reason`
  `"expired"` (EXPIRED_REASON), so a watcher can tell the two apart.

With EXPAND_CONTENT a change carries the document as written, unless the task's `shown`
says otherwise: a document that left the user's scope is shown as it was before (see
`TaskRecord.shown_document`).
"""

from __future__ import annotations

from collections.abc import Callable

from fleetwatch.index.document import JsonObject
from fleetwatch.index.expiry import is_expiry
from fleetwatch.query.stream_events import Event, EventKind
from fleetwatch.query.stream_messages import Closed, Current, Initial, Message, Notification, Resync

#: The document a change shows (EXPAND_CONTENT), or None to show only its link.
Shown = Callable[[Event], JsonObject | None]
#: The `reason` of a change that deleted a document because its expiration time passed.
EXPIRED_REASON = "expired"


def as_written(event: Event) -> JsonObject | None:
    """The document as the change wrote it."""
    return event.change.body


def message_json(
    task_link: str, message: Message, *, expand: bool, shown: Shown = as_written
) -> JsonObject:
    """The JSON of one subscription message of the task at `task_link`."""
    if isinstance(message, Initial):
        results = message.payload if isinstance(message.payload, dict) else {}
        return {
            "type": "initial",
            "seq": message.cursor,
            "last": message.last,
            "documentSelfLink": task_link,
            "taskInfo": {"stage": "STARTED"},
            "results": results,
        }
    if isinstance(message, Notification):
        return change_json(task_link, message, expand=expand, shown=shown)
    if isinstance(message, Current):
        return {"type": "current", "seq": message.seq, "documentSelfLink": task_link}
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


def change_json(
    task_link: str, note: Notification, *, expand: bool, shown: Shown = as_written
) -> JsonObject:
    """One matching change as a QueryTask-shaped notification."""
    change = note.event.change
    results: JsonObject = {"documentLinks": [change.self_link]}
    if expand:
        document = shown(note.event)
        results["documents"] = {} if document is None else {change.self_link: document}
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
    if note.event.kind is EventKind.DELETED and is_expiry(change):
        body["reason"] = EXPIRED_REASON
    elif note.event.reason is not None:
        body["reason"] = note.event.reason
    return body
