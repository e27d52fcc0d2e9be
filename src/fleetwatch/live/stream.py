"""A campaign's message stream, shared by the WebSocket and Server-Sent Events adapters.

Results come from the one subscription mechanism: a continuous query on `documentKind =
fleet:result AND campaignLink = /fleet/campaigns/N` (initial results read in one snapshot,
then every new result, no gap and no duplicate). Totals and status come from the campaign's
live state, sent when they change. Messages are `{"type": "totals" | "result" | "status" |
"error", "data": {...}}`; each result carries the change-log sequence that a reconnecting
client resumes after (`Last-Event-ID` / `since`), so reconnecting loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fleetwatch.live.campaigns import RESULT_KIND, CampaignService, campaign_link, result_view
from fleetwatch.query.spec import Query, parse_query
from fleetwatch.query.subscriptions import (
    Closed,
    Initial,
    Notification,
    ResumeTooOld,
    Resync,
    SubscriptionHub,
)

#: How often totals are re-checked while nothing else happens (seconds).
TOTALS_INTERVAL = 0.5
#: Messages taken from the subscription per batch at most.
MAX_BATCH = 500


@dataclass
class StreamMessage:
    """One message for the client; `seq` is set on results (the resume cursor)."""

    type: str
    data: dict[str, Any]
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}


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
) -> AsyncIterator[list[StreamMessage]]:
    """Messages of one campaign, in batches, until the caller stops iterating.

    Whatever has arrived by the time a batch is built goes into it (up to MAX_BATCH), so a
    burst of results costs one totals check and one socket write per batch rather than per
    result: the stream keeps up with a fleet-wide campaign instead of trailing the store.
    Raises NotFound (before the first message) for an unknown campaign.
    """
    campaign = await campaigns.get(campaign_id)  # NotFound for an unknown campaign
    opening: list[StreamMessage] = []
    try:
        sub = await hub.subscribe_query(results_query(campaign_id), since=since)
    except ResumeTooOld as exc:
        opening.append(StreamMessage("error", {"error": str(exc), "resync": True}))
        sub = await hub.subscribe_query(results_query(campaign_id))
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for message in sub:
                await queue.put(message)
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
                if batch:
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
                if message is None or isinstance(message, Closed):
                    if batch:
                        yield batch
                    return
                if isinstance(message, Initial):
                    # each Initial carries one chunk: matching bodies, the campaign's among them
                    for body in message.payload or []:
                        if body.get("documentKind") == RESULT_KIND:
                            batch.append(StreamMessage("result", result_view(body)))
                        else:
                            campaign = body
                    if message.last:
                        last_status = campaign.get("status")
                        batch.append(StreamMessage("status", _status(campaign), message.seq))
                elif isinstance(message, Notification):
                    change = message.event.change
                    if change.action.value == "DELETE":
                        continue
                    if change.kind == RESULT_KIND:
                        batch.append(StreamMessage("result", result_view(change.body), message.seq))
                    elif change.body.get("status") != last_status:
                        last_status = change.body.get("status")
                        batch.append(StreamMessage("status", _status(change.body), message.seq))
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
                    yield batch
                    return
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
