"""The change log across nodes: PostgreSQL orders it, the bus spreads it.

After each local commit a node publishes its changes (or, when they are large, only the
last sequence). Every other node hands them to its listeners in sequence order, reading
from the store whatever it has not seen (a lost broadcast, a Redis restart, another node's
commit still in flight on the bus). A slow poll of the log's end covers the case where
no broadcast arrives at all, so a missing Redis delays changes but never loses them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from fleetwatch.bus.bus import Bus, cancel_all
from fleetwatch.index import Action, Change, DocumentIndex
from fleetwatch.periodic import Periodic

log = logging.getLogger(__name__)

CHANNEL = "changes"
#: Changes larger than this (encoded) travel as a sequence number; receivers read them.
MAX_INLINE_BYTES = 256 * 1024


def encode_changes(changes: Sequence[Change]) -> bytes:
    """The broadcast of a commit: its changes when small, else its last sequence only."""
    body: dict[str, Any] = {
        "last": changes[-1].seq,
        "changes": [
            [c.seq, c.self_link, c.kind, c.version, c.action.value, c.time_micros]
            + [c.body, c.prev_body]
            for c in changes
        ],
    }
    data = orjson.dumps(body)
    if len(data) > MAX_INLINE_BYTES:
        return orjson.dumps({"last": changes[-1].seq})
    return data


def decode_changes(payload: bytes) -> tuple[list[Change] | None, int]:
    """The changes (None when only the sequence was sent) and the last sequence."""
    body = orjson.loads(payload)
    rows = body.get("changes")
    changes = (
        None
        if rows is None
        else [
            Change(
                seq=int(r[0]),
                self_link=r[1],
                kind=r[2],
                version=int(r[3]),
                action=Action(r[4]),
                time_micros=int(r[5]),
                body=r[6],
                prev_body=r[7],
            )
            for r in rows
        ]
    )
    return changes, int(body["last"])


class ChangeFanout:
    """Publishes this node's commits and delivers the other nodes' ones, in order."""

    def __init__(self, index: DocumentIndex, bus: Bus, poll_interval: float = 1.0) -> None:
        self.index = index
        self.bus = bus
        self.poll_interval = poll_interval
        self._inbox: asyncio.Queue[tuple[list[Change] | None, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._poll = Periodic(
            "fleetwatch-fanout-poll",
            self._catch_up,
            lambda: self.poll_interval,
            failure="change log catch-up failed (the database is away?); next poll retries",
        )
        self.received = 0

    def start(self) -> None:
        """Order local commits with remote ones, and start receiving."""
        self.index.order_across_nodes()
        self.index.on_commit = self._publish
        self.bus.subscribe(CHANNEL, self._on_message)
        self.bus.subscribe("reconnected", lambda _payload: self._inbox.put_nowait((None, 0)))
        self._tasks = [
            asyncio.create_task(self._receive(), name="fleetwatch-fanout-receive"),
        ]
        self._poll.start()

    async def stop(self) -> None:
        self.index.on_commit = None
        await cancel_all(self._tasks)
        await self._poll.stop()

    def _publish(self, changes: Sequence[Change]) -> None:
        self.bus.publish(CHANNEL, encode_changes(changes))

    def _on_message(self, payload: bytes) -> None:
        try:
            self._inbox.put_nowait(decode_changes(payload))
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("ignored a malformed change broadcast")

    async def _receive(self) -> None:
        while True:
            changes, last = await self._inbox.get()
            self.received += 1
            try:
                if last == 0:  # the bus reconnected: whatever was sent meanwhile is lost
                    await self.index.catch_up()
                else:
                    await self.index.deliver(changes, last)
            except Exception:
                log.exception("delivering changes from another node failed; the poll retries")

    async def _catch_up(self) -> None:
        await self.index.catch_up()
