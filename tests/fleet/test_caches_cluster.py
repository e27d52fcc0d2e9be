"""Cached tables stay current on every node of a cluster: enroll secrets and the agent
config through `Invalidations` on a real Redis, teams and labels from the shared change log.
Two sets of services over one PostgreSQL database stand for two nodes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from fleetwatch.bus.bus import Invalidations
from fleetwatch.bus.redis_bus import RedisBus
from fleetwatch.config import Settings, async_database_url
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.agent_config import AgentConfigService
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.labels import LabelService
from fleetwatch.fleet.secrets import EnrollSecretService
from fleetwatch.fleet.teams import TeamService
from fleetwatch.index import DocumentIndex
from fleetwatch.storage import Database
from tests.agent import details_for
from tests.services import PostgresServer, RedisServer

_names = itertools.count()


@dataclass
class Node:
    db: Database
    bus: RedisBus
    index: DocumentIndex
    secrets: EnrollSecretService
    agent_config: AgentConfigService
    teams: TeamService
    hosts: HostService
    labels: LabelService

    async def sync(self) -> None:
        """Deliver the other node's changes (what the fan-out's poll does)."""
        await self.index.catch_up()
        await self.hosts.refresh()


async def _node(url: str, redis_url: str) -> Node:
    settings = Settings(distributed_hold=1)
    db = Database(async_database_url(url))
    await db.migrate()
    bus = RedisBus(redis_url)
    invalidations = Invalidations(bus)
    index = DocumentIndex(db)
    index.order_across_nodes()
    await index.start()
    hosts = HostService(db, index, settings, bus)
    node = Node(
        db=db,
        bus=bus,
        index=index,
        secrets=EnrollSecretService(db, invalidations),
        agent_config=AgentConfigService(db, settings, invalidations),
        teams=TeamService(db, index, follow=True),
        hosts=hosts,
        labels=LabelService(db, index, hosts, settings),
    )
    await bus.start()
    await node.secrets.load()
    await node.agent_config.load()
    await node.teams.load()
    await hosts.load()
    await node.labels.load()
    return node


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database(f"caches_cluster{next(_names)}")


@pytest.fixture
async def nodes(pg_url: str, redis_url: str) -> AsyncIterator[tuple[Node, Node]]:
    a = await _node(pg_url, redis_url)
    b = await _node(pg_url, redis_url)
    try:
        yield a, b
    finally:
        for node in (a, b):
            await node.bus.stop()
            await node.db.dispose()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the other node never caught up"
        await asyncio.sleep(0.02)


async def test_a_secret_added_on_one_node_enrolls_on_the_other(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.secrets.add("fresh-enroll-secret")
    # before any announcement arrives, an unknown secret reloads the table once
    found = await b.secrets.find("fresh-enroll-secret")
    assert found is not None and found.secret == "fresh-enroll-secret"


async def test_a_secret_revoked_on_one_node_stops_working_on_the_other(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.secrets.add("short-lived-enroll-secret")
    await _until(lambda: b.secrets.check("short-lived-enroll-secret") is not None)
    await a.secrets.revoke("short-lived-enroll-secret")
    await _until(lambda: b.secrets.check("short-lived-enroll-secret") is None)
    assert await b.secrets.find("short-lived-enroll-secret") is None


async def test_the_agent_config_follows_a_change_on_another_node(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    config = {"options": {"logger_tls_period": 77}, "schedule": {}}
    await a.agent_config.replace(config)
    await _until(lambda: b.agent_config.for_agent()["options"]["logger_tls_period"] == 77)
    assert b.agent_config.stored() == config


async def test_teams_follow_the_change_log(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    team = await a.teams.create({"name": "ops", "config": {"options": {"a": 1}}})
    await b.sync()
    assert b.teams.get(team["id"]) == team
    assert b.teams.config_of(team["id"]) == {"options": {"a": 1}}
    await a.teams.update(team["id"], {"name": "sre"})
    await b.sync()
    assert b.teams.get(team["id"])["name"] == "sre"
    await a.teams.delete(team["id"])
    await b.sync()
    assert not b.teams.known(team["id"])


async def test_labels_and_membership_follow_the_change_log(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    host, _ = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    label = await a.labels.create({"name": "web", "query": "SELECT 1 FROM system_info"})
    await b.sync()
    assert b.labels.get(label["id"])["query"] == "SELECT 1 FROM system_info"
    state_b = b.hosts.by_id(host.id)
    assert state_b is not None
    assert f"fleet_label_query_{label['id']}" in b.labels.queries_for(state_b, time.time())
    manual = await a.labels.create({"name": "pets", "hosts": [host.id]})
    await b.sync()
    assert b.labels.members(manual["id"]) == {host.id}
    info = b.labels.info(manual["id"])
    assert info is not None and info.members == frozenset({host.id})
    assert {"id": manual["id"], "name": "pets"} in state_b.labels
    await a.labels.set_members(manual["id"], [])
    await b.sync()
    assert b.labels.members(manual["id"]) == set()
    await a.labels.delete(label["id"])
    await b.sync()
    assert b.labels.info(label["id"]) is None


async def test_label_answers_on_one_node_are_not_asked_again_on_another(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    host, _ = await a.hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    label = await a.labels.create({"name": "web", "query": "SELECT 1 FROM system_info"})
    await b.sync()
    state_a, state_b = a.hosts.by_id(host.id), b.hosts.by_id(host.id)
    assert state_a is not None and state_b is not None
    name = f"fleet_label_query_{label['id']}"
    assert name in a.labels.queries_for(state_a, time.time())
    await a.labels.ingest(state_a, [DistributedResult(name, [{"1": "1"}], 0, "")])
    # node B hears that the host's label answers are fresh and does not ask again
    await _until(lambda: not b.labels.queries_for(state_b, time.time()))
    # a new label makes every node ask at once, whatever was heard before
    other = await a.labels.create({"name": "db", "query": "SELECT 1 FROM os_version"})
    await b.sync()
    assert f"fleet_label_query_{other['id']}" in b.labels.queries_for(state_b, time.time())


async def test_a_change_announced_while_redis_was_down_is_reloaded(
    pg_url: str,
) -> None:
    redis = RedisServer.start()  # this test's own: it is killed and restarted
    a = await _node(pg_url, redis.url)
    b = await _node(pg_url, redis.url)
    try:
        redis.kill()
        await _until(lambda: b.bus.health()["redis"] == "unreachable")
        await a.agent_config.replace({"options": {"logger_tls_period": 42}})
        await a.secrets.add("made-while-redis-was-down")  # both announcements are lost
        redis.restart()
        # after reconnecting, every node reloads every cache once
        await _until(lambda: b.agent_config.stored() == {"options": {"logger_tls_period": 42}})
        await _until(lambda: b.secrets.check("made-while-redis-was-down") is not None)
    finally:
        for node in (a, b):
            await node.bus.stop()
            await node.db.dispose()
        redis.stop()
