"""The change log across nodes: two indexes on one PostgreSQL database, each with its own
Redis bus, see every change (their own and the other's) once, in sequence order; a change
whose broadcast is lost is read from the store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest

from fleetwatch.bus.change_fanout import (
    MAX_INLINE_BYTES,
    ChangeFanout,
    decode_changes,
    encode_changes,
)
from fleetwatch.bus.redis_bus import RedisBus
from fleetwatch.config import async_database_url
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.storage import Database
from tests.services import PostgresServer


class Node:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self.db = Database(async_database_url(database_url))
        self.index = DocumentIndex(self.db)
        self.bus = RedisBus(redis_url)
        self.fanout = ChangeFanout(self.index, self.bus, poll_interval=0.5)
        self.seen: list[Change] = []
        self.index.add_listener(self._record)

    def _record(self, batch: Sequence[Change]) -> None:
        self.seen.extend(batch)

    async def start(self) -> None:
        await self.db.migrate()
        await self.bus.start()
        await self.index.start()
        self.fanout.start()

    async def stop(self) -> None:
        await self.fanout.stop()
        await self.bus.stop()
        await self.db.dispose()


_databases = itertools.count()


@pytest.fixture
def shared_database(pg_server: PostgresServer) -> str:
    return pg_server.create_database(f"fanout{next(_databases)}")


@pytest.fixture
async def nodes(shared_database: str, redis_url: str) -> AsyncIterator[tuple[Node, Node]]:
    one, two = Node(shared_database, redis_url), Node(shared_database, redis_url)
    await one.start()
    await two.start()
    try:
        yield one, two
    finally:
        await one.stop()
        await two.stop()


async def _until(check: object, timeout: float = 10.0) -> None:
    async def wait() -> None:
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def test_both_nodes_see_every_change_once_in_order(nodes: tuple[Node, Node]) -> None:
    one, two = nodes

    async def writer(node: Node, name: str) -> None:
        for i in range(40):
            await node.index.write(Write(Action.PUT, f"/docs/t/{name}{i}", "docs:t", {"i": i}))

    await asyncio.gather(writer(one, "a"), writer(two, "b"))
    await _until(lambda: len(one.seen) == 80 and len(two.seen) == 80)
    for node in (one, two):
        seqs = [c.seq for c in node.seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == 80
    assert [c.self_link for c in one.seen] == [c.self_link for c in two.seen]
    assert [c.body for c in one.seen] == [c.body for c in two.seen]


async def test_a_lost_broadcast_is_read_from_the_store(nodes: tuple[Node, Node]) -> None:
    one, two = nodes
    one.index.on_commit = None  # node one's broadcasts are lost
    await one.index.write(Write(Action.PUT, "/docs/t/quiet", "docs:t", {"n": 1}))
    # node two finds it by its poll of the log's end, or as the gap before its own commit
    await two.index.write(Write(Action.PUT, "/docs/t/loud", "docs:t", {"n": 2}))
    assert [c.self_link for c in two.seen] == ["/docs/t/quiet", "/docs/t/loud"]
    await one.index.write(Write(Action.PUT, "/docs/t/quiet2", "docs:t", {"n": 3}))
    await _until(lambda: len(two.seen) == 3)  # no broadcast at all: the poll
    assert two.seen[-1].self_link == "/docs/t/quiet2"


def test_large_commits_travel_as_their_last_sequence() -> None:
    small = [Change(1, "/a", "k", 0, Action.PUT, 5, {"x": "y"}, None)]
    assert decode_changes(encode_changes(small)) == (small, 1)
    big = [
        Change(i, f"/a{i}", "k", 0, Action.PUT, 5, {"x": "y" * 1000}, None)
        for i in range(1, MAX_INLINE_BYTES // 1000 + 10)
    ]
    assert decode_changes(encode_changes(big)) == (None, big[-1].seq)
