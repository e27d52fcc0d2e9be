"""The campaign service directly: results stored once, finishing, and the retention purge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.errors import Invalid, NotFound
from fleetwatch.fleet.targets import Targets
from fleetwatch.index import DocumentIndex, Write
from fleetwatch.index.store import Outcome
from fleetwatch.live.campaign_docs import campaign_link, result_link
from tests.live.campaign_fleet import campaign_fleet


async def test_finish_and_purge(index: DocumentIndex) -> None:
    campaigns, (one, two) = await campaign_fleet(
        index, Settings(live_query_result_retention=3600), 2
    )
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


async def test_a_campaign_every_host_answered_is_let_go_of_before_its_queue_expiry(
    index: DocumentIndex,
) -> None:
    campaigns, states = await campaign_fleet(index, Settings(), 3)
    kept = []
    for _ in range(3):  # queued for offline hosts by default: a day before it expires
        campaign = await campaigns.create("SELECT 1", Targets(all=True))
        assert campaign.expires_at - campaign.created_at >= 3600
        name = f"fleet_distributed_query_{campaign.id}"
        for host in states[:2]:
            await campaigns.ingest(host, [DistributedResult(name, [{"a": "1"}], 0, "")])
        await campaigns.sweep(time.time())
        assert campaigns.active(campaign.id) is not None  # the third host is still asked
        await campaigns.ingest(states[2], [DistributedResult(name, [], 0, "")])
        await campaigns.sweep(time.time())
        kept.append(len(campaigns.list_active()))
        body = await campaigns.get(campaign.id)  # from its document: the final totals
        assert body["status"] == "finished" and body["totals"]["responded"] == 3
    assert kept == [0, 0, 0]  # was [1, 2, 3]: every finished campaign held for a day
    assert campaigns._done == {} and campaigns._by_host == {}
    assert all(campaigns.queries_for(h, time.time()) == {} for h in states)


async def test_late_answers_leave_non_responders_and_count_as_late(index: DocumentIndex) -> None:
    campaigns, (one, two, three) = await campaign_fleet(index, Settings(), 3)
    campaign = await campaigns.create("SELECT 1", Targets(all=True), timeout=5)
    name = f"fleet_distributed_query_{campaign.id}"
    await campaigns.ingest(one, [DistributedResult(name, [{"a": "1"}], 0, "")])
    await campaigns.sweep(campaign.deadline)
    expired = await campaigns.get(campaign.id)
    assert expired["status"] == "expired"
    assert expired["non_responders"] == [two.id, three.id]
    assert expired["totals"]["pending"] == 2
    # the expired campaign is still asked of the hosts it waited for; one answers late
    assert name in campaigns.queries_for(two, time.time())
    await campaigns.ingest(two, [DistributedResult(name, [{"a": "2"}], 0, "")])
    late = await campaigns.get(campaign.id)
    assert late["status"] == "expired"
    assert late["non_responders"] == [three.id]  # was [two, three] with pending 1
    totals = late["totals"]
    assert (totals["responded"], totals["pending"], totals["late"]) == (2, 1, 1)
    stored = await index.get(result_link(campaign.id, two.id))
    assert stored is not None and stored.body["late"] is True
    on_time = await index.get(result_link(campaign.id, one.id))
    assert on_time is not None and on_time.body["late"] is False
    # the next sweep writes the document (what streams and other nodes read) to match
    await campaigns.sweep(campaign.deadline + 1)
    document = await index.get(campaign_link(campaign.id))
    assert document is not None
    assert document.body["non_responders"] == [three.id]
    assert document.body["totals"]["late"] == 1
    # a node that loads it from the store tells the same story
    again, _ = await campaign_fleet(index, Settings(), 0)
    await again.load()
    reloaded = await again.get(campaign.id)
    assert reloaded["non_responders"] == [three.id] and reloaded["totals"]["late"] == 1


async def test_truncated_results_say_which_cap(index: DocumentIndex) -> None:
    settings = Settings(
        live_query_max_rows_per_host=3,
        live_query_max_rows_per_campaign=5,
        live_query_max_result_bytes=1024,
    )
    campaigns, hosts = await campaign_fleet(index, settings, 4)
    campaign = await campaigns.create("SELECT 1", Targets(all=True))
    name = f"fleet_distributed_query_{campaign.id}"
    small = [{"n": str(i)} for i in range(4)]
    big = [{"n": "x" * 600}, {"n": "y" * 600}]
    await campaigns.ingest(hosts[0], [DistributedResult(name, small, 0, "")])  # 3 of 4 rows
    await campaigns.ingest(hosts[1], [DistributedResult(name, big, 0, "")])  # 1 of 2: bytes
    await campaigns.ingest(hosts[2], [DistributedResult(name, small, 0, "")])  # 1 row left
    await campaigns.ingest(hosts[3], [DistributedResult(name, small[:1], 0, "")])  # none left
    results = {r["host_id"]: r for r in await campaigns.host_results(campaign.id)}
    reasons = [
        (len(results[h.id]["rows"]), results[h.id]["truncated"], results[h.id]["truncated_reason"])
        for h in hosts
    ]
    assert reasons == [
        (3, True, "rows_per_host"),
        (1, True, "result_bytes"),
        (1, True, "rows_per_campaign"),
        (0, True, "rows_per_campaign"),
    ]
    fits = await campaigns.create("SELECT 2", Targets(all=True))
    await campaigns.ingest(
        hosts[0], [DistributedResult(f"fleet_distributed_query_{fits.id}", small[:2], 0, "")]
    )
    whole = {r["host_id"]: r for r in await campaigns.host_results(fits.id)}
    assert whole[hosts[0].id]["truncated"] is False
    assert whole[hosts[0].id]["truncated_reason"] is None
    assert whole[hosts[1].id]["status"] == "pending"
    assert whole[hosts[1].id]["truncated_reason"] is None


async def test_a_zero_timeout_is_refused_as_not_greater_than_zero(index: DocumentIndex) -> None:
    campaigns, _ = await campaign_fleet(index, Settings(), 1)
    for timeout in (0, -1, 86401):
        with pytest.raises(Invalid, match="greater than 0 and at most 86400 seconds"):
            await campaigns.create("SELECT 1", Targets(all=True), timeout=timeout)


async def test_wait_ends_once_every_answer_is_readable_and_the_reply_is_one_instant(
    index: DocumentIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer claimed but not yet committed when the others commit: the wait goes on
    until it is readable (and the finished status is committed), and the campaign, totals
    and results read after it describe the same instant (issues 15 and 16)."""
    campaigns, agents = await campaign_fleet(index, Settings(), 3)
    campaign = await campaigns.create("SELECT 1", Targets(all=True))
    name = f"fleet_distributed_query_{campaign.id}"
    late = result_link(campaign.id, agents[0].id)
    committing = asyncio.Event()
    real_apply = index.apply

    async def apply(writes: Sequence[Write]) -> list[Outcome]:
        if any(w.self_link == late for w in writes):
            await committing.wait()  # the first host's answer commits last
        return await real_apply(writes)

    monkeypatch.setattr(index, "apply", apply)

    async def wait_and_read() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        await campaigns.wait(campaign.id, 60)
        return await campaigns.read(campaign.id)

    waiter = asyncio.create_task(wait_and_read())
    first = asyncio.create_task(
        campaigns.ingest(agents[0], [DistributedResult(name, [{"n": "0"}], 0, "")])
    )
    await asyncio.sleep(0)  # its answer is claimed; its write waits
    for i, agent in enumerate(agents[1:], 1):
        await campaigns.ingest(agent, [DistributedResult(name, [{"n": str(i)}], 0, "")])
    # every other answer is committed: a wait ending now would miss the first one's rows
    await asyncio.wait({waiter}, timeout=1.0)
    committing.set()
    await first
    body, results = await waiter
    assert [r["status"] for r in results] == ["complete"] * 3
    assert sorted(r["rows"][0]["n"] for r in results) == ["0", "1", "2"]
    assert body["status"] == "finished"
    totals = body["totals"]
    assert (totals["responded"], totals["pending"], totals["rows"]) == (3, 0, 3)
    # what GET .../results (and the campaign) give afterwards is the reply
    assert await campaigns.host_results(campaign.id) == results
    assert (await campaigns.read(campaign.id)) == (body, results)
