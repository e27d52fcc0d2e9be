"""Notification JSON: an expired document is reported like a delete, with reason "expired"."""

from __future__ import annotations

import asyncio
from typing import Any

from fleetwatch.index import Action, DocumentIndex, Write, now_micros
from fleetwatch.index.expiry import ExpirySweeper
from fleetwatch.query.notifications import message_json
from fleetwatch.query.spec import parse_query
from fleetwatch.query.stream_events import StreamMode
from fleetwatch.query.stream_messages import Notification
from fleetwatch.query.subscriptions import SubscriptionHub

TASK = "/core/local-query-tasks/t1"


async def test_an_expired_document_is_a_delete_with_reason_expired(index: DocumentIndex) -> None:
    hub = SubscriptionHub(index, queue_limit=100)
    hub.start()
    try:
        query = parse_query({"term": {"propertyName": "documentKind", "matchValue": "k"}})
        sub = await hub.subscribe_query(query, mode=StreamMode(notify_leave=True))
        now = now_micros()
        await index.write(Write(Action.POST, "/d/1", "k", {"a": 1}, expiration_micros=now + 1))
        await index.write(Write(Action.POST, "/d/2", "k", {"a": 2}))
        await ExpirySweeper(index).sweep_once(now=now + 1)
        await index.write(Write(Action.DELETE, "/d/2"))
        changes: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            async for message in sub:
                if isinstance(message, Notification):
                    changes.append(message_json(TASK, message, expand=False))
                    if len(changes) == 4:
                        break
    finally:
        await sub.aclose()
        await hub.stop()
    expired, deleted = changes[2], changes[3]
    assert expired["results"]["documentLinks"] == ["/d/1"]
    assert (expired["event"], expired["documentUpdateAction"]) == ("deleted", "DELETE")
    assert expired["reason"] == "expired" and expired["stopMatch"] is False
    assert deleted["results"]["documentLinks"] == ["/d/2"]
    assert (deleted["event"], deleted["documentUpdateAction"]) == ("deleted", "DELETE")
    assert deleted["reason"] == "the document was deleted"
