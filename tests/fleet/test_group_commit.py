"""GroupCommit: what arrives during a batch goes in the next one, results per item, a
failed batch fails each of its callers and not the next batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fleetwatch.fleet.group_commit import GroupCommit


async def test_items_queued_during_a_batch_share_the_next_one() -> None:
    release = asyncio.Event()
    batches: list[list[int]] = []

    async def handler(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(handler, max_batch=3)
    first = asyncio.create_task(group.submit(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    assert group.backlog == 5
    release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
    # one alone, then the five that waited, at most three per batch, in order
    assert batches == [[0], [1, 2, 3], [4, 5]]
    assert (group.batches, group.items) == (3, 6)


async def test_a_failed_batch_fails_its_callers_only() -> None:
    calls = 0

    async def handler(items: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk full")
        return [s.upper() for s in items]

    group: GroupCommit[str, str] = GroupCommit(handler)
    with pytest.raises(RuntimeError, match="disk full"):
        await group.submit("a")
    assert await group.submit("b") == "B"


async def test_a_handler_must_answer_every_item() -> None:
    async def handler(items: Sequence[int]) -> list[int]:
        return []

    group: GroupCommit[int, int] = GroupCommit(handler)
    with pytest.raises(RuntimeError, match="0 results for 1"):
        await group.submit(1)


def test_max_batch_must_be_positive() -> None:
    async def handler(items: Sequence[int]) -> list[int]:
        return list(items)

    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(handler, max_batch=0)
