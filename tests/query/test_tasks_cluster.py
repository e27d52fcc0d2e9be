"""Query tasks made on one node are run, cancelled, re-timed and removed on another.

Two sets of services over one PostgreSQL database stand for two nodes; `sync()` is what
each node runs when told (Invalidations) or every few seconds. The periodic sync reads
only the tasks' heads; a task's body is read once, when a node first adopts it.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fleetwatch.config import Settings, async_database_url
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.index.document import now_micros
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.task_requests import TaskError
from fleetwatch.query.tasks import QueryTaskService
from fleetwatch.storage import Database
from tests.query.task_client import kind_query, task_body
from tests.services import PostgresServer

_names = itertools.count()


@dataclass
class Node:
    db: Database
    index: DocumentIndex
    tasks: QueryTaskService


async def _node(url: str) -> Node:
    db = Database(async_database_url(url))
    await db.migrate()
    index = DocumentIndex(db)
    index.order_across_nodes()
    await index.start()
    hub = SubscriptionHub(index, queue_limit=1000)
    hub.start()
    tasks = QueryTaskService(index, hub, Settings())
    await tasks.start()
    return Node(db, index, tasks)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database(f"tasks_cluster{next(_names)}")


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Node, Node]]:
    a = await _node(pg_url)
    b = await _node(pg_url)
    try:
        yield a, b
    finally:
        for node in (a, b):
            await node.tasks.stop()
            await node.db.dispose()


async def test_a_task_follows_its_row_on_another_node(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    _, created = await a.tasks.create(
        "local-query-tasks",
        task_body(kind_query("docs:n"), "CONTINUOUS", "COUNT", link="count"),
    )
    link = str(created["documentSelfLink"])
    with pytest.raises(TaskError):
        b.tasks.get(link)
    await b.tasks.sync()
    assert b.tasks.get(link).running

    # node B runs the task too: a change made on A counts there once delivered
    await a.index.apply([Write(Action.POST, "/docs/n/one", "docs:n", {})])
    await b.index.catch_up()
    assert b.tasks.get(link).to_json()["results"]["documentCount"] == 1

    later = now_micros() + 7 * 24 * 3600 * 1_000_000
    await a.tasks.patch(link, {"documentExpirationTimeMicros": later})
    await b.tasks.sync()
    assert b.tasks.get(link).expiration_micros == later

    await a.tasks.patch(link, {"taskInfo": {"stage": "CANCELLED"}})
    await b.tasks.sync()
    record = b.tasks.get(link)
    assert record.stage.value == "CANCELLED" and not record.running
    assert b.tasks.hub.stream(link) is None  # its filter is gone on B as well

    await a.tasks.delete(link)
    await b.tasks.sync()
    with pytest.raises(TaskError):
        b.tasks.get(link)
