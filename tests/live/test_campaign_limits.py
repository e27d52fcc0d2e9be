"""A campaign's max_rows / max_bytes: once reached nobody is asked, later answers are
counted without their rows, and the campaign and its results say which limit."""

from __future__ import annotations

import time

import pytest

from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.targets import Targets
from fleetwatch.index import DocumentIndex
from fleetwatch.live.campaign_docs import campaign_link
from fleetwatch.live.campaign_limits import CampaignLimits, limit_value
from tests.live.campaign_fleet import campaign_fleet


def _rows(n: int, width: int = 1) -> list[dict[str, str]]:
    return [{"n": str(i).rjust(width, "0")} for i in range(n)]


async def test_max_rows_stops_asking_and_keeps_counting(index: DocumentIndex) -> None:
    campaigns, hosts = await campaign_fleet(index, Settings(), 4)
    campaign = await campaigns.create("SELECT 1", Targets(all=True), max_rows=5)
    name = f"fleet_distributed_query_{campaign.id}"
    now = time.time()
    assert all(name in campaigns.queries_for(h, now) for h in hosts)
    await campaigns.ingest(hosts[0], [DistributedResult(name, _rows(3), 0, "")])
    assert campaigns.queries_for(hosts[3], now) == {name: "SELECT 1"}  # 3 of 5: still asking
    await campaigns.ingest(hosts[1], [DistributedResult(name, _rows(4), 0, "")])  # 2 kept
    # reached: nobody is asked any more
    assert all(campaigns.queries_for(h, now) == {} for h in hosts)
    # an answer already on its way is counted, its rows not stored
    stats = {"wall_time_ms": 9, "memory": 100}
    await campaigns.ingest(hosts[2], [DistributedResult(name, _rows(2), 0, "", stats)])
    results = {r["host_id"]: r for r in await campaigns.host_results(campaign.id)}
    got = [
        (len(results[h.id]["rows"]), results[h.id]["rows_count"], results[h.id]["truncated_reason"])
        for h in hosts[:3]
    ]
    assert got == [(3, 3, None), (2, 4, "max_rows"), (0, 2, "max_rows")]
    body = await campaigns.get(campaign.id)
    assert body["truncated"] is True and body["truncated_reason"] == "max_rows"
    assert body["limits"] == {"max_rows": 5, "max_bytes": Settings().campaign_max_bytes}
    assert body["totals"]["responded"] == 3 and body["totals"]["rows"] == 5
    assert body["cost"]["samples"] == 1 and body["cost"]["wall_time_ms"]["max"] == 9
    # the campaign document says so too (what streams and other nodes read)
    document = await index.get(campaign_link(campaign.id))
    assert document is not None and document.body["truncated_reason"] == "max_rows"
    # and a node that loads the campaign from the store knows it reached its limit
    again, _ = await campaign_fleet(index, Settings(), 0)
    await again.load()
    reloaded = await again.get(campaign.id)
    assert reloaded["truncated_reason"] == "max_rows"
    assert again.queries_for(hosts[3], now) == {}


async def test_max_bytes_from_the_settings_default(index: DocumentIndex) -> None:
    campaigns, hosts = await campaign_fleet(index, Settings(campaign_max_bytes=100), 3)
    campaign = await campaigns.create("SELECT 1", Targets(all=True))
    name = f"fleet_distributed_query_{campaign.id}"
    # each row is {"n":"xxxxx"}: 14 bytes; 7 fit in 100
    await campaigns.ingest(hosts[0], [DistributedResult(name, _rows(5, 5), 0, "")])
    assert name in campaigns.queries_for(hosts[2], time.time())
    await campaigns.ingest(hosts[1], [DistributedResult(name, _rows(5, 5), 0, "")])
    results = {r["host_id"]: r for r in await campaigns.host_results(campaign.id)}
    assert len(results[hosts[1].id]["rows"]) == 2
    assert results[hosts[1].id]["truncated_reason"] == "max_bytes"
    assert campaigns.queries_for(hosts[2], time.time()) == {}
    body = await campaigns.get(campaign.id)
    assert (body["truncated"], body["truncated_reason"]) == (True, "max_bytes")


async def test_limits_must_be_positive() -> None:
    for bad in (0, -3, 1.5, "10", True):
        with pytest.raises(Invalid, match="max_rows must be a positive integer"):
            limit_value({"max_rows": bad}, "max_rows")
    assert limit_value({}, "max_rows") is None
    assert limit_value({"max_bytes": 7}, "max_bytes") == 7
    limits = CampaignLimits(10, 100)
    assert limits.reached(9, 99) is None
    assert limits.reached(10, 0) == "max_rows" and limits.reached(0, 100) == "max_bytes"
