"""Host memory kept coherent across nodes sharing one PostgreSQL database: node keys
enrolled elsewhere, deletions, re-enrolments and transfers from the change log, other
nodes' check-ins from the hosts table, status transitions by one lease holder only.

Two `HostService`s over one database stand for two nodes; the change log reaches the
other node through `DocumentIndex.catch_up` (what the fan-out's poll does).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fleetwatch.bus.bus import Bus, LocalBus
from fleetwatch.bus.redis_bus import RedisBus
from fleetwatch.config import Settings, async_database_url
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.teams import TeamService
from fleetwatch.index import DocumentIndex
from fleetwatch.storage import Database
from fleetwatch.storage.unreachable import is_unreachable
from tests.agent import details_for
from tests.services import PostgresServer, free_port

_names = itertools.count()


@dataclass
class Node:
    db: Database
    index: DocumentIndex
    hosts: HostService

    async def sync(self) -> None:
        """Deliver the other nodes' changes and apply what the refresher would."""
        await self.index.catch_up()
        await self.hosts.refresh()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database(f"hosts_cluster{next(_names)}")


async def _node(url: str, bus: Bus, settings: Settings | None = None) -> Node:
    db = Database(async_database_url(url))
    await db.migrate()
    index = DocumentIndex(db)
    index.order_across_nodes()
    await index.start()
    hosts = HostService(db, index, settings or Settings(distributed_hold=1), bus)
    await hosts.load()
    return Node(db, index, hosts)


@pytest.fixture
async def nodes(pg_url: str, redis_url: str) -> AsyncIterator[tuple[Node, Node]]:
    # Node B is on a cluster bus that is never started: a cluster member that does not
    # hold the host-status lease. Node A's LocalBus holds every lease.
    bus_b = RedisBus(redis_url)
    a = await _node(pg_url, _Clustered())
    b = await _node(pg_url, bus_b)
    try:
        yield a, b
    finally:
        for node in (a, b):
            await node.db.dispose()
        await bus_b.redis.aclose()


class _Clustered(LocalBus):
    """A cluster member that holds every lease (the single-node leases, clustered)."""

    @property
    def clustered(self) -> bool:
        return True


async def test_a_node_key_enrolled_on_another_node_is_found_once(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    host, key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    assert b.hosts.by_node_key(key) is None  # not in memory yet
    found = await b.hosts.find(key)
    assert found is not None and found.id == host.id and found.hostname == "h1"
    assert b.hosts.by_node_key(key) is found  # cached: the next check-in is SQL-free
    assert await b.hosts.find("no-such-key") is None
    assert await b.hosts.find("") is None


async def test_enrolments_elsewhere_arrive_from_the_change_log(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    host, key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    await b.sync()
    state = b.hosts.by_id(host.id)
    assert state is not None and b.hosts.by_node_key(key) is state
    assert [h.id for h in b.hosts.all()] == [host.id]  # campaigns on B target it


async def test_a_reenrolled_host_loses_its_old_key_on_every_node(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    host, old_key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    assert await b.hosts.find(old_key) is not None
    again, new_key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    assert again.id == host.id
    await b.sync()
    assert b.hosts.by_node_key(old_key) is None
    assert await b.hosts.find(old_key) is None
    found = await b.hosts.find(new_key)
    assert found is not None and found.id == host.id


async def test_a_reenrolment_seen_first_in_the_table_is_not_missed(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    _, old_key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    assert await b.hosts.find(old_key) is not None
    _, new_key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    await b.hosts.refresh()  # the seen-time refresh runs before the change arrives
    assert b.hosts.by_node_key(old_key) is None
    assert b.hosts.by_node_key(new_key) is not None
    await b.sync()  # the change, arriving later, leaves it so
    assert b.hosts.by_node_key(old_key) is None
    assert b.hosts.by_node_key(new_key) is not None


async def test_a_host_deleted_elsewhere_is_forgotten(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    host, key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    assert await b.hosts.find(key) is not None
    await a.hosts.delete(host.id)
    await b.sync()
    assert b.hosts.by_id(host.id) is None
    assert await b.hosts.find(key) is None


async def test_a_deletion_wins_over_a_row_read_before_it(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    host, _ = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    await a.hosts.delete(host.id)
    await b.index.catch_up()  # the PUT and the DELETE: the reload finds no row
    await b.hosts.refresh()
    assert b.hosts.by_id(host.id) is None


async def test_transfers_elsewhere_move_the_host_here(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    team = await TeamService(a.db, a.index).create({"name": "ops"})
    host, key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    await b.sync()
    await a.hosts.transfer([host.id], team["id"])
    await b.sync()
    state = b.hosts.by_node_key(key)
    assert state is not None and state.team_id == team["id"]
    await a.hosts.transfer([host.id], None)
    await b.sync()
    assert state.team_id is None
    doc = await b.index.get(f"/fleet/hosts/{host.id}")
    assert doc is not None and doc.body["team_id"] is None


async def test_check_ins_on_another_node_reach_this_one(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    host, key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    await b.sync()
    later = time.time() + 30
    state_a = a.hosts.by_id(host.id)
    assert state_a is not None
    a.hosts.mark_seen(state_a, later)
    await a.hosts.flush()
    await b.hosts.refresh()
    state_b = b.hosts.by_id(host.id)
    assert state_b is not None and state_b.seen_time == later
    # B's older check-in does not move the table's seen_time back
    b.hosts.mark_seen(state_b, later - 20)
    await b.hosts.flush()
    await a.hosts.refresh()
    assert state_a.seen_time == later
    assert (await a.hosts.get(host.id))["seen_time"] is not None


async def test_status_transitions_are_written_by_the_lease_holder_only(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    host, _ = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    await b.sync()
    long_ago = time.time() - 3600
    for node in (a, b):
        state = node.hosts.by_id(host.id)
        assert state is not None
        state.seen_time = long_ago
    link = f"/fleet/hosts/{host.id}"
    await b.hosts.flush()  # not the holder: nothing written
    doc = await b.index.get(link)
    assert doc is not None and doc.body["status"] == "online"
    await a.hosts.flush()
    doc = await a.index.get(link)
    assert doc is not None and doc.body["status"] == "offline"
    await b.index.catch_up()
    state_b = b.hosts.by_id(host.id)
    assert state_b is not None and state_b.reported_status == "offline"
    statuses = [c.body["status"] for c in await a.index.read_changes(0) if c.self_link == link]
    assert statuses == ["online", "offline"]  # reported once


async def test_a_single_node_never_looks_up_unknown_keys(pg_url: str) -> None:
    a = await _node(pg_url, _Clustered())
    single = await _node(pg_url, LocalBus())
    try:
        _, key = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
        # a single node's memory is the whole truth: no table lookup
        assert await single.hosts.find(key) is None
    finally:
        await a.db.dispose()
        await single.db.dispose()


async def test_an_unreadable_table_is_an_error_not_an_unknown_key() -> None:
    # Nothing listens on this port: the lookup of an unknown key fails as unreachable (the
    # agent gets a 503 and retries) instead of node_invalid (which would make it re-enroll).
    db = Database(async_database_url(f"postgresql://postgres@127.0.0.1:{free_port()}/none"))
    hosts = HostService(db, DocumentIndex(db), Settings(), _Clustered())
    try:
        with pytest.raises(OSError) as raised:
            await hosts.find("some-node-key")
        assert is_unreachable(raised.value)
        with pytest.raises(OSError):  # and it is not remembered as unknown
            await hosts.find("some-node-key")
    finally:
        await db.dispose()
