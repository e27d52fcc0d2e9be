"""A running task follows its owner's current roles, over real sockets on both backends.

An admin's continuous task over activities sees every user's live queries; demoted to
observer, the admin's task restarts within the observer's scope (its stream closes, its
count is read afresh) and another user's live query is no longer counted. A role changed
behind the node's back (another node, the database) is found by the periodic check; a
deleted owner's task is cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import delete, update
from websockets.sync.client import connect

from fleetwatch.config import Settings
from fleetwatch.storage import Database
from fleetwatch.storage.schema import api_tokens, users
from tests.api.test_query_tasks_scope import (
    S1,
    Teams,
    global_user,
    run,
    setup,
    setup_after_restart,
)
from tests.query.task_client import TASKS, kind_query, task_body
from tests.server import RunningServer, running_server

LIVE_QUERIES = kind_query("fleet:activity", type="live_query")


@pytest.fixture
def world(live_server: RunningServer) -> Iterator[Teams]:
    made = setup(live_server)
    made.enroll(S1, "host-a")  # a live query needs a target
    yield made
    made.close()


def count(client: httpx.Client, link: str) -> int:
    task = client.get(link).json()
    assert task["taskInfo"]["stage"] == "STARTED", task
    found: int = task["results"]["documentCount"]
    return found


def check(world: Teams) -> int:
    """Run the task service's scope check now (what its 5 s loop does)."""
    changed: int = world.server.call(world.server.services.query_tasks.check_scopes())
    return changed


def test_a_demoted_admins_task_no_longer_sees_others_live_queries(world: Teams) -> None:
    boss, boss_id = global_user(world, "admin")
    task = boss.post(TASKS, json=task_body(LIVE_QUERIES, "CONTINUOUS", "COUNT")).json()
    link = task["documentSelfLink"]
    assert "scope" not in task  # an admin sees everything
    run(world.admin, {"query": "SELECT 'admin one'"})
    assert count(boss, link) == 1
    ws_url = world.server.url.replace("http", "ws", 1) + f"{link}/stream"
    with connect(ws_url, additional_headers={"Authorization": boss.headers["Authorization"]}) as ws:
        while not json.loads(ws.recv(timeout=20)).get("last", True):
            pass
        demoted = world.admin.patch(
            f"/api/v1/fleet/users/{boss_id}", json={"global_role": "observer"}
        )
        assert demoted.status_code == 200, demoted.text
        # subscribers are told to reconnect: the task restarted within its new scope
        message = json.loads(ws.recv(timeout=20))
        while message["type"] != "closed":
            message = json.loads(ws.recv(timeout=20))
        assert "roles changed" in message["reason"]
    assert check(world) == 0  # the node handling the change re-scoped it at once
    task = boss.get(link).json()
    assert task["taskInfo"]["stage"] == "STARTED" and "scope" in task
    # the admin's live query is out of the observer's scope: read afresh, not counted
    assert count(boss, link) == 0
    run(world.admin, {"query": "SELECT 'admin two'"})
    assert count(world.admin, link) == 0
    # the stream opens again, within the new scope
    with connect(ws_url, additional_headers={"Authorization": boss.headers["Authorization"]}) as ws:
        initial = json.loads(ws.recv(timeout=20))
        assert initial["type"] == "initial" and initial["results"]["documentCount"] == 0


def test_the_periodic_check_rescopes_and_ends_tasks_of_changed_owners(world: Teams) -> None:
    boss, boss_id = global_user(world, "admin")
    link = boss.post(TASKS, json=task_body(LIVE_QUERIES, "CONTINUOUS", "COUNT")).json()[
        "documentSelfLink"
    ]
    run(world.admin, {"query": "SELECT 'admin one'"})
    assert count(boss, link) == 1
    db = world.server.services.db

    async def demote() -> None:  # as another node (or an operator) would: no callback here
        async with db.transaction() as conn:
            await conn.execute(
                update(users).where(users.c.id == boss_id).values(global_role="observer")
            )

    world.server.call(demote())
    assert check(world) == 1
    assert "scope" in world.admin.get(link).json()
    assert count(world.admin, link) == 0
    run(world.admin, {"query": "SELECT 'admin two'"})
    assert count(world.admin, link) == 0
    assert check(world) == 0  # nothing changed since

    async def remove() -> None:
        async with db.transaction() as conn:
            await conn.execute(delete(api_tokens).where(api_tokens.c.user_id == boss_id))
            await conn.execute(delete(users).where(users.c.id == boss_id))

    world.server.call(remove())
    assert check(world) == 1
    task = world.admin.get(link).json()
    assert task["taskInfo"]["stage"] == "CANCELLED"
    assert task["taskInfo"]["failure"] == {"message": "the user was deleted"}


def test_a_role_changed_while_the_server_was_down_rescopes_on_resume(
    server_settings: Settings,
) -> None:
    with running_server(server_settings) as server:
        world = setup(server)
        world.enroll(S1, "host-a")
        boss, boss_id = global_user(world, "admin")
        link = boss.post(TASKS, json=task_body(LIVE_QUERIES, "CONTINUOUS", "COUNT")).json()[
            "documentSelfLink"
        ]
        run(world.admin, {"query": "SELECT 'admin one'"})
        assert count(boss, link) == 1
        world.close()

    async def demote() -> None:  # e.g. by another node while this one was down
        db = Database(server_settings.effective_database_url())
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    update(users).where(users.c.id == boss_id).values(global_role="observer")
                )
        finally:
            await db.dispose()

    asyncio.run(demote())
    with running_server(server_settings) as server:
        world = setup_after_restart(server, {})
        task = world.admin.get(link).json()
        assert task["taskInfo"]["stage"] == "STARTED" and "scope" in task
        assert task["results"]["documentCount"] == 0  # read afresh within the new scope
        run(world.admin, {"query": "SELECT 'admin two'"})
        assert count(world.admin, link) == 0
        world.close()
