"""A running task is held to its owner's current scope, told by the `owner_scopes` callback.

On both backends, with a real hub and a real webhook receiver: a changed scope restarts the
task within it (its stored scope, its results read afresh, its webhook resubscribed and
fed only what the new scope lets through); an owner the callback no longer knows ends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

from fleetwatch.config import Settings
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.query.scope import scope_json, term
from fleetwatch.query.spec import Query
from fleetwatch.query.spec_enums import TaskStage
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.tasks import QueryTaskService
from tests.query.task_client import kind_query, task_body
from tests.receiver import Receiver, running_receiver

LOOPBACK = "127.0.0.0/8,::1/128"
OWNER = 7


async def delivered(receiver: Receiver, name: str, link: str) -> list[str]:
    """The document links delivered to `name` once `link` is among them."""
    for _ in range(1000):
        links = [
            doc
            for body in receiver.bodies(name)
            for doc in (body.get("results") or {}).get("documentLinks", [])
        ]
        if link in links:
            return links
        await asyncio.sleep(0.01)
    raise AssertionError(f"{link} was not delivered to {name}")


async def test_a_changed_scope_restarts_the_task_and_a_gone_owner_ends_it(
    index: DocumentIndex,
) -> None:
    scopes: dict[int, Query | None] = {OWNER: None}

    async def owner_scopes(ids: Collection[int]) -> Mapping[int, Query | None]:
        return {i: scopes[i] for i in ids if i in scopes}

    hub = SubscriptionHub(index, queue_limit=1000)
    hub.start()
    service = QueryTaskService(
        index, hub, Settings(outbound_allow=LOOPBACK), owner_scopes=owner_scopes
    )
    await service.start()
    try:
        with running_receiver() as receiver:
            await index.apply([Write(Action.POST, "/docs/s/a0", "docs:s", {"team": "a"})])
            _, made = await service.create(
                "local-query-tasks",
                task_body(kind_query("docs:s"), "CONTINUOUS", "COUNT"),
                OWNER,
            )
            link = str(made["documentSelfLink"])
            assert made["results"]["documentCount"] == 1
            await service.add_webhook(link, {"reference": receiver.endpoint("s")})
            await asyncio.sleep(0.2)  # the worker subscribes before the write
            await index.apply([Write(Action.POST, "/docs/s/a1", "docs:s", {"team": "a"})])
            await delivered(receiver, "s", "/docs/s/a1")
            assert await service.check_scopes() == 0  # nothing changed

            scopes[OWNER] = term("team", "b")
            assert await service.check_scopes() == 1
            record = service.get(link)
            assert record.scope is not None and scope_json(record.scope) == scope_json(
                term("team", "b")
            )
            assert record.running and record.dirty
            assert record.current_results()["documentCount"] == 0  # read afresh
            await asyncio.sleep(0.2)  # the worker subscribes again before the writes
            await index.apply([Write(Action.POST, "/docs/s/a2", "docs:s", {"team": "a"})])
            await index.apply([Write(Action.POST, "/docs/s/b1", "docs:s", {"team": "b"})])
            links = await delivered(receiver, "s", "/docs/s/b1")
            assert "/docs/s/a2" not in links
            assert record.current_results()["documentCount"] == 1
            await service.flush()
            stored = (await service.store.load_tasks([link]))[0]
            assert stored.body["scope"] == scope_json(term("team", "b"))

            del scopes[OWNER]
            assert await service.check_scopes() == 1
            assert record.stage is TaskStage.CANCELLED and not record.running
            assert record.failure == {"message": "the user was deleted"}
            assert await service.check_scopes() == 0
    finally:
        await service.stop()
        await hub.stop()
