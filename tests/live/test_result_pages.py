"""A campaign's results in pages and exports: bounded store reads, each host once."""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.targets import Targets
from fleetwatch.index import Document, DocumentIndex
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.live.result_export import csv_lines, ndjson_lines
from fleetwatch.live.result_pages import (
    RESULT_WALL_TIME,
    CampaignResults,
    ResultOrder,
    TargetListCache,
)
from fleetwatch.query import keyset
from tests.live.campaign_fleet import campaign_fleet


async def _campaign(
    index: DocumentIndex, n: int
) -> tuple[CampaignService, HostService, list[HostState], Campaign]:
    campaigns, states = await campaign_fleet(index, Settings(), n)
    return campaigns, campaigns.hosts, states, await campaigns.create("SELECT 1", Targets(all=True))


async def _answer(
    campaigns: CampaignService, campaign: Campaign, host: HostState, wall: Any = None
) -> None:
    name = f"fleet_distributed_query_{campaign.id}"
    stats = {} if wall is None else {"wall_time_ms": wall, "memory": str(wall * 1000)}
    rows = [{"host": host.hostname}]
    await campaigns.ingest(host, [DistributedResult(name, rows, 0, "", stats)])


def _reader(campaigns: CampaignService, hosts: HostService, campaign: Campaign) -> CampaignResults:
    return CampaignResults(campaigns.index, hosts, campaign.to_json())


async def test_host_pages_list_every_target_once_while_answers_arrive(
    index: DocumentIndex,
) -> None:
    campaigns, hosts, states, campaign = await _campaign(index, 23)
    for host in states[::3]:
        await _answer(campaigns, campaign, host)
    order = ResultOrder.parse(None, None)
    seen: list[dict[str, Any]] = []
    after = None
    late = [h for h in states if h not in states[::3]]
    while True:
        page = await _reader(campaigns, hosts, campaign).page(order, per_page=5, after=after)
        assert page.count == 23 and len(page.results) <= 5
        seen.extend(page.results)
        if page.next is None:
            break
        after = page.next
        # hosts answer while the walk goes on, before and after the cursor
        await _answer(campaigns, campaign, late.pop(0))
        await _answer(campaigns, campaign, late.pop())
    ids = [r["host_id"] for r in seen]
    assert ids == sorted(h.id for h in states), "each target once, in host order"
    statuses = {r["status"] for r in seen}
    assert statuses <= {"complete", "pending"} and "complete" in statuses
    # numbered pages still work, in the same order
    third = await _reader(campaigns, hosts, campaign).page(order, per_page=5, page=2)
    assert [r["host_id"] for r in third.results] == ids[10:15]
    empty = await _reader(campaigns, hosts, campaign).page(order, per_page=5, page=9)
    assert empty.results == [] and empty.next is None


@pytest.mark.parametrize("direction", ["desc", "asc"])
async def test_stat_pages_are_ordered_by_the_stat_and_skip_nobody(
    index: DocumentIndex, direction: str
) -> None:
    campaigns, hosts, states, campaign = await _campaign(index, 12)
    walls: dict[int, Any] = {}
    for i, host in enumerate(states[:10]):
        wall = None if i == 4 else [30, 10, 20, 10][i % 4] + i // 4
        walls[host.id] = wall
        await _answer(campaigns, campaign, host, wall)
    order = ResultOrder.parse("wall_time_ms", direction)
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        page = await _reader(campaigns, hosts, campaign).page(order, per_page=3, after=after)
        assert page.count == 10  # the answers (the two pending hosts are not ranked)
        seen.extend(page.results)
        if page.next is None:
            break
        after = page.next
    got = [r["host_id"] for r in seen]
    assert len(got) == len(set(got)) == 10
    sign = -1 if direction == "desc" else 1
    expected = sorted(walls, key=lambda h: (walls[h] is None, sign * (walls[h] or 0), f"{h}"))
    assert got == expected  # ties by link
    # the same order as memory's (sorted in the store rather than read from an index)
    by_memory = ResultOrder.parse("memory", direction)
    in_memory_order = [
        r["host_id"]
        async for chunk in _reader(campaigns, hosts, campaign).chunks(by_memory, 4)
        for r in chunk
    ]
    assert in_memory_order == expected
    # stats are numbers, whatever osquery sent them as
    first = {"wall_time_ms": 32, "memory": 32000} if direction == "desc" else None
    assert first is None or seen[0]["stats"] == first


async def _plan(db: Any, statement: Any) -> str:
    """The database's plan for `statement` (its parameters written in), as text."""
    async with db.connect() as conn:
        sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if db.dialect == "postgresql":
            # the tables are tiny: make scanning the whole table the costliest choice
            await conn.exec_driver_sql("SET enable_seqscan = off")
            rows = await conn.exec_driver_sql("EXPLAIN " + sql)
            return "\n".join(str(r[0]) for r in rows)
        rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(str(r[-1]) for r in rows)


async def test_wall_time_pages_are_read_through_the_index_in_order(index: DocumentIndex) -> None:
    """Every statement of a page by wall time, first or after a cursor (with or without a
    value), in either direction, is a range of the campaign's entries in its index: no
    sort of the campaign's results (migration 0010)."""
    campaigns, hosts, states, campaign = await _campaign(index, 6)
    for i, host in enumerate(states):
        await _answer(campaigns, campaign, host, None if i == 2 else 10 + i % 3)
    link = f"/fleet/campaigns/{campaign.id}/results/{states[1].id}"
    for descending in (False, True):
        for after in (None, keyset.Position(link, 11.0), keyset.Position(link, None)):
            statements = RESULT_WALL_TIME.statement(
                index.db.dialect, campaign.id, descending=descending, limit=3, after=after
            )
            for statement in statements:
                plan = await _plan(index.db, statement)
                # either index serves a range of one value (ordered by link in both)
                assert "ix_documents_result_wall_time_" in plan, plan
                assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


async def test_cursors_belong_to_their_order(index: DocumentIndex) -> None:
    campaigns, hosts, _states, campaign = await _campaign(index, 4)
    reader = _reader(campaigns, hosts, campaign)
    first = await reader.page(ResultOrder.parse(None, None), per_page=2)
    assert first.next is not None
    with pytest.raises(Invalid, match="another order"):
        await reader.page(ResultOrder.parse("memory", "asc"), per_page=2, after=first.next)
    with pytest.raises(Invalid, match="next"):
        await reader.page(ResultOrder.parse(None, None), per_page=2, after="not-a-cursor")
    with pytest.raises(Invalid, match="either page or after"):
        await reader.page(ResultOrder.parse(None, None), per_page=2, page=1, after=first.next)
    with pytest.raises(Invalid, match="order_key"):
        ResultOrder.parse("rows", None)
    with pytest.raises(Invalid, match="order_direction"):
        ResultOrder.parse("memory", "up")
    with pytest.raises(Invalid, match="host id order"):
        ResultOrder.parse(None, "desc")


class _CountingIndex:
    """Records the size of every batch of results read (the real index reads them)."""

    def __init__(self, index: DocumentIndex) -> None:
        self.index = index
        self.db = index.db
        self.batches: list[int] = []
        self.gets: list[str] = []

    async def get(self, link: str) -> Document | None:
        self.gets.append(link)
        return await self.index.get(link)

    async def get_many(self, links: Sequence[str]) -> dict[str, Document]:
        self.batches.append(len(links))
        return await self.index.get_many(links)


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
async def test_exports_read_the_store_in_bounded_chunks(index: DocumentIndex, kind: str) -> None:
    """Constant memory without timing: however many hosts, the export asks the store for at
    most one chunk of results at a time, and hands out bytes after each chunk."""
    campaigns, hosts, states, campaign = await _campaign(index, 45)
    for host in states[:40]:
        await _answer(campaigns, campaign, host, 5)
    counting = _CountingIndex(index)
    reader = CampaignResults(counting, hosts, campaign.to_json())  # type: ignore[arg-type]
    order = ResultOrder.parse(None, None)
    lines = csv_lines(reader, order, chunk=8) if kind == "csv" else ndjson_lines(reader, order, 8)
    parts = [part async for part in lines]
    passes = 2 if kind == "csv" else 1  # the CSV header needs a first pass
    assert counting.batches == [8, 8, 8, 8, 8, 5] * passes
    assert len(parts) == 6  # one write per chunk, not one at the end
    text = b"".join(parts).decode()
    if kind == "ndjson":
        results = [orjson.loads(line) for line in text.splitlines()]
        assert [r["host_id"] for r in results] == sorted(h.id for h in states)
        assert [r["status"] for r in results] == ["complete"] * 40 + ["pending"] * 5
    else:
        records = list(csv.reader(io.StringIO(text)))
        assert records[0] == ["host_id", "hostname", "status", "error", "host"]
        assert len(records) == 46 and records[1][4] == "h0"
    # sorted exports page the result documents the same way
    counting.batches.clear()
    by_wall = ResultOrder.parse("wall_time_ms", "asc")
    chunks = [len(c) async for c in reader.chunks(by_wall, 8)]
    assert chunks == [8, 8, 8, 8, 8]


async def test_a_campaigns_target_list_is_read_once_for_all_its_pages(
    index: DocumentIndex,
) -> None:
    """Paging by host through a campaign (each page its own request) parses its targets
    document once, not once per page; another campaign's list is read for its own."""
    campaigns, hosts, states, campaign = await _campaign(index, 30)
    for host in states[:10]:
        await _answer(campaigns, campaign, host)
    counting = _CountingIndex(index)
    order = ResultOrder.parse(None, None)
    seen: list[int] = []
    after: str | None = None
    while True:  # a new reader per page, as the API makes one per request
        reader = CampaignResults(counting, hosts, campaign.to_json())  # type: ignore[arg-type]
        found = await reader.page(order, per_page=7, after=after)
        seen.extend(r["host_id"] for r in found.results)
        assert found.count == 30
        if found.next is None:
            break
        after = found.next
    assert seen == sorted(h.id for h in states)
    targets = [link for link in counting.gets if link.endswith("/targets")]
    assert len(targets) == 1, counting.gets
    other = await campaigns.create("SELECT 2", Targets(hosts=frozenset({states[0].id})))
    reader = CampaignResults(counting, hosts, other.to_json())  # type: ignore[arg-type]
    found = await reader.page(order, per_page=7)
    assert [r["host_id"] for r in found.results] == [states[0].id]
    assert len([link for link in counting.gets if link.endswith("/targets")]) == 2


def test_the_target_list_cache_keeps_the_most_recent_within_its_budget() -> None:
    cache = TargetListCache(budget=10)
    lists = {i: (array("q", range(i)), array("q", range(i))) for i in (2, 3, 4)}
    cache.put(1, lists[2])  # 4 ids
    cache.put(2, lists[3])  # 6 more: 10
    assert cache.get(1) is lists[2] and cache.get(2) is lists[3]
    cache.put(3, lists[4])  # 8 more: the least recently used (1) goes, then 2
    assert cache.get(1) is None and cache.get(2) is None and cache.get(3) is lists[4]
    big = (array("q", range(20)), array("q"))
    cache.put(4, big)  # over the budget alone: kept, as the latest
    assert cache.get(4) is big and cache.get(3) is None
