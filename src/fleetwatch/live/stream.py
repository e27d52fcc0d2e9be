"""A campaign's message stream, shared by the WebSocket and Server-Sent Events adapters.

Results come from the one subscription mechanism: a continuous query on `documentKind =
fleet:result AND campaignLink = /fleet/campaigns/N` (initial results read in one snapshot,
then every new result, no gap and no duplicate). Totals and status come from the campaign's
live state, sent when they change. Messages are `{"type": "totals" | "result" | "status" |
"current" | "error", "data": {...}}`.

Every result and status, the initial ones included, carries `seq`: the change-log sequence of
the write that produced it, a cursor that a reconnecting client resumes after
(`Last-Event-ID` / `since`). The initial results are sent in sequence order, so resuming
after any of them gives exactly what came after it. `current` (with `seq` N) says the client
now holds everything up to N: it follows the initial results and a resume's replay, and
tells "still loading" from "live". A cursor older than the change log's retention gets an
`error` with `"resync": true`, then the current results afresh.

Results are scoped as the REST reads are (`fleetwatch.live.result_scope`): a team-only
reader gets only the answers of hosts that were in one of their teams when they answered.
The scope is taken afresh from the reader's current roles for every batch that holds a
result (the initial ones and the live ones alike), so a reader who loses a team stops
receiving its hosts' answers from the next batch on. Totals and status are the campaign's
own and are sent unscoped (they count hosts, not rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fleetwatch.index.document import Change
from fleetwatch.live.campaign_docs import RESULT_KIND, campaign_link, result_view
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.live.result_scope import EVERY_HOST, ResultScope
from fleetwatch.query.spec import Query, parse_query
from fleetwatch.query.stream_messages import (
    Closed,
    Current,
    Initial,
    Notification,
    ResumeTooOld,
    Resync,
)
from fleetwatch.query.subscriptions import SubscriptionHub

#: How often totals are re-checked while nothing else happens (seconds).
TOTALS_INTERVAL = 0.5
#: Messages taken from the subscription per batch at most.
MAX_BATCH = 500
#: The reader's scope as of now (read again for every batch holding results).
ScopeNow = Callable[[], Awaitable[ResultScope]]


async def _every_host() -> ResultScope:
    return EVERY_HOST


async def _visible(batch: list[StreamMessage], scope_now: ScopeNow) -> list[StreamMessage]:
    """The batch without the results its reader may not see now: the scope is read once per
    batch, and only when the batch holds a result."""
    if not any(m.type == "result" for m in batch):
        return batch
    scope = await scope_now()
    if scope.everything:
        return batch
    return [m for m in batch if m.type != "result" or scope.keeps_answer(m.data)]


@dataclass
class StreamMessage:
    """One message for the client; `seq` is set on results (the resume cursor)."""

    type: str
    data: dict[str, Any]
    seq: int | None = None
    #: The change a shared result message was made from (see `SharedResults`).
    source: Change | None = field(default=None, repr=False, compare=False)
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "data": self.data}
        if self.seq is not None:
            out["seq"] = self.seq
        return out

    def encoded(self) -> bytes:
        """The message as JSON, serialized on first use (a shared message once for all)."""
        if self._encoded is None:
            self._encoded = orjson.dumps(self.to_json())
        return self._encoded


class SharedResults:
    """The result message of each change, made once for every stream that receives it.

    Each watcher of a campaign has a subscription of its own, but the index hands every
    one of them the same `Change` object for a new result: the first stream to take it makes
    the message (and, when first sent, its JSON), the others reuse it. An entry lives as
    long as some stream still holds its message, and the message holds the change, so an
    id is not reused while it is a key here.
    """

    def __init__(self) -> None:
        self._by_change: weakref.WeakValueDictionary[int, StreamMessage] = (
            weakref.WeakValueDictionary()
        )

    def message(self, change: Change, seq: int) -> StreamMessage:
        """The result message of `change`, notified at sequence `seq`."""
        message = self._by_change.get(id(change))
        if message is None or message.source is not change or message.seq != seq:
            message = StreamMessage("result", result_view(change.body), seq, source=change)
            self._by_change[id(change)] = message
        return message


#: One per process: a change object belongs to one index, so its identity is the key.
shared_results = SharedResults()


def results_query(campaign_id: int) -> Query:
    """The continuous query of a campaign's stream: its results and its own document.

    The campaign document is written when the status changes, after the results that made
    it change, so in the change log a `finished` status always follows the last result.
    """
    return parse_query(
        {
            "occurance": "MUST_OCCUR",
            "booleanClauses": [
                {
                    "occurance": "SHOULD_OCCUR",
                    "booleanClauses": [
                        {
                            "occurance": "MUST_OCCUR",
                            "term": {"propertyName": "documentKind", "matchValue": RESULT_KIND},
                        },
                        {
                            "occurance": "MUST_OCCUR",
                            "term": {
                                "propertyName": "campaignLink",
                                "matchValue": campaign_link(campaign_id),
                            },
                        },
                    ],
                },
                {
                    "occurance": "SHOULD_OCCUR",
                    "term": {
                        "propertyName": "documentSelfLink",
                        "matchValue": campaign_link(campaign_id),
                    },
                },
            ],
        }
    )


async def campaign_stream(
    campaigns: CampaignService,
    hub: SubscriptionHub,
    campaign_id: int,
    since: int | None = None,
    scope_now: ScopeNow = _every_host,
) -> AsyncIterator[list[StreamMessage]]:
    """Messages of one campaign, in batches, until the caller stops iterating.

    `scope_now` gives the reader's result scope from their roles at that moment; it is
    called for every batch holding a result, whose results outside it are left out (a batch
    left empty is not sent).

    Whatever has arrived by the time a batch is built goes into it (up to MAX_BATCH), so a
    burst of results costs one totals check and one socket write per batch rather than per
    result: the stream keeps up with a fleet-wide campaign instead of trailing the store.
    Raises NotFound (before the first message) for an unknown campaign.
    """
    campaign = await campaigns.get(campaign_id)  # NotFound for an unknown campaign
    opening: list[StreamMessage] = []
    try:
        sub = await hub.subscribe_query(results_query(campaign_id), since=since, markers=True)
    except ResumeTooOld as exc:
        opening.append(StreamMessage("error", {"error": str(exc), "resync": True}))
        sub = await hub.subscribe_query(results_query(campaign_id), markers=True)
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for message in sub:
                item: Any = message
                # Taken at once: every watcher's pump runs before any of them sends, so
                # they all find the one shared message (see SharedResults).
                if isinstance(message, Notification):
                    change = message.event.change
                    if change.kind == RESULT_KIND and change.action.value != "DELETE":
                        item = shared_results.message(change, message.seq)
                await queue.put(item)
        finally:
            await queue.put(None)

    pumper = asyncio.create_task(pump())
    last_totals: Any = None
    last_status: Any = None
    try:
        while True:
            batch, opening = opening, []
            current = await campaigns.get(campaign_id)
            if current["totals"] != last_totals:
                last_totals = current["totals"]
                batch.append(StreamMessage("totals", {"campaign_id": campaign_id, **last_totals}))
            if queue.empty():
                if batch:  # totals and opening errors: never a result
                    yield batch
                    batch = []
                try:
                    arrived = [await asyncio.wait_for(queue.get(), TOTALS_INTERVAL)]
                except TimeoutError:
                    continue
            else:
                arrived = []
            while len(arrived) < MAX_BATCH and not queue.empty():
                arrived.append(queue.get_nowait())
            for message in arrived:
                if isinstance(message, StreamMessage):  # a result, made in pump()
                    batch.append(message)
                    continue
                if message is None or isinstance(message, Closed):
                    batch = await _visible(batch, scope_now)
                    if batch:
                        yield batch
                    return
                if isinstance(message, Initial):
                    # each Initial carries one chunk: matching bodies, the campaign's among
                    # them, in the order of their last write, with that write's sequence
                    bodies = message.payload or []
                    seqs = message.seqs or (message.seq,) * len(bodies)
                    for body, seq in zip(bodies, seqs, strict=True):
                        if body.get("documentKind") == RESULT_KIND:
                            batch.append(StreamMessage("result", result_view(body), seq))
                        else:
                            last_status = _status(body)
                            batch.append(StreamMessage("status", last_status, seq))
                    if message.last and last_status is None:  # no campaign document (purged)
                        last_status = _status(campaign)
                        batch.append(StreamMessage("status", last_status, message.seq))
                elif isinstance(message, Current):
                    marker = {"campaign_id": campaign_id}
                    batch.append(StreamMessage("current", marker, message.seq))
                elif isinstance(message, Notification):
                    change = message.event.change
                    if change.action.value == "DELETE":
                        continue
                    if change.kind != RESULT_KIND and _status(change.body) != last_status:
                        # a new status, or late answers that shrank non_responders
                        last_status = _status(change.body)
                        batch.append(StreamMessage("status", last_status, message.seq))
                elif isinstance(message, Resync):
                    batch.append(
                        StreamMessage(
                            "error",
                            {
                                "error": "the client fell behind; reconnect with since",
                                "resync": True,
                                "seq": message.seq,
                            },
                        )
                    )
                    yield await _visible(batch, scope_now)
                    return
            batch = await _visible(batch, scope_now)
            if batch:
                yield batch
    finally:
        pumper.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumper
        await sub.aclose()


def _status(campaign: dict[str, Any]) -> dict[str, Any]:
    out = {"campaign_id": campaign["id"], "status": campaign["status"]}
    if "non_responders" in campaign:
        out["non_responders"] = campaign["non_responders"]
    return out
