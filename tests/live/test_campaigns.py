"""The campaign service directly: results stored once, finishing, and the retention purge."""

from __future__ import annotations

import time

import pytest

from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.fleet.errors import NotFound
from fleetwatch.fleet.hosts import HostService
from fleetwatch.index import DocumentIndex
from fleetwatch.live.campaigns import CampaignService, result_link
from fleetwatch.live.targets import Targets
from fleetwatch.osquery.distributed import DistributedResult
from tests.agent import details_for


async def test_finish_and_purge(index: DocumentIndex) -> None:
    settings = Settings(live_query_result_retention=3600)
    hosts = HostService(index.db, index, settings)
    await hosts.load()
    one, _ = await hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    two, _ = await hosts.enroll("h2", "9", details_for("h2", "u2"), None)
    campaigns = CampaignService(settings, index, hosts, HostWakeups())
    campaign = await campaigns.create("SELECT 1", Targets(all=True))
    name = f"fleet_distributed_query_{campaign.id}"
    assert campaigns.queries_for(one, time.time()) == {name: "SELECT 1"}
    await campaigns.ingest(one, [DistributedResult(name, [{"a": "1"}], 0, "")])
    await campaigns.ingest(one, [DistributedResult(name, [{"a": "2"}], 0, "")])  # a resend
    assert campaigns.queries_for(one, time.time()) == {}
    await campaigns.ingest(two, [DistributedResult(name, [], 1, "no such table: t")])
    body = await campaigns.get(campaign.id)
    assert body["status"] == "finished" and body["totals"]["responded"] == 2
    stored = await index.get(result_link(campaign.id, one.id))
    assert stored is not None and stored.body["rows"] == [{"a": "1"}]
    # still active (queued window): nothing is purged; once inactive and old, it goes
    assert await campaigns.purge(time.time() + 7200) == 0
    await campaigns.sweep(campaign.expires_at + 1)
    assert await campaigns.purge(time.time()) == 0  # not old enough yet
    assert await campaigns.purge(time.time() + 7200) == 1
    assert await index.get(result_link(campaign.id, one.id)) is None
    with pytest.raises(NotFound):
        await campaigns.get(campaign.id)
