"""A campaign's message stream (fleetwatch.live.stream): one message per result for all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.targets import Targets
from fleetwatch.index import DocumentIndex
from fleetwatch.live.stream import StreamMessage, campaign_stream
from fleetwatch.query.subscriptions import SubscriptionHub
from tests.live.campaign_fleet import campaign_fleet


async def _until_result(stream: AsyncIterator[list[StreamMessage]]) -> StreamMessage:
    async for batch in stream:
        for message in batch:
            if message.type == "result":
                return message
    raise AssertionError("the stream ended without a result")


async def _until_current(stream: AsyncIterator[list[StreamMessage]]) -> None:
    async for batch in stream:
        if any(m.type == "current" for m in batch):
            return
    raise AssertionError("the stream ended before it was current")


async def test_a_result_is_made_and_serialized_once_for_every_stream(
    index: DocumentIndex,
) -> None:
    """Two watchers of one campaign get the same message object for a new result, so its
    view and its JSON are made once, not once per subscriber."""
    campaigns, (host,) = await campaign_fleet(index, Settings(), 1)
    hub = SubscriptionHub(index, queue_limit=1000)
    hub.start()
    campaign = await campaigns.create("SELECT 1", Targets(all=True))
    first = campaign_stream(campaigns, hub, campaign.id)
    second = campaign_stream(campaigns, hub, campaign.id)
    try:
        async with asyncio.timeout(20):
            await _until_current(first)
            await _until_current(second)
        name = f"fleet_distributed_query_{campaign.id}"
        await campaigns.ingest(host, [DistributedResult(name, [{"a": "1"}], 0, "")])
        async with asyncio.timeout(20):
            one = await _until_result(first)
            two = await _until_result(second)
        assert one is two
        assert one.encoded() is two.encoded()
        sent = orjson.loads(one.encoded())
        assert sent["type"] == "result" and sent["seq"] == one.seq
        assert sent["data"]["host_id"] == host.id and sent["data"]["rows"] == [{"a": "1"}]
        assert not any(k.startswith("document") for k in sent["data"])
    finally:
        await first.aclose()  # type: ignore[attr-defined]
        await second.aclose()  # type: ignore[attr-defined]
        await hub.stop()
