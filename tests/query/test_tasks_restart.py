"""Standing tasks survive a restart and miss no change, on both backends.

Between the two server runs, documents are written straight into the store (as another
node would): the restarted task catches up from the last sequence it reflected, its COUNT
counters include those changes, and its webhook resumes from the last one it delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from fleetwatch.config import Settings
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.tasks import QueryTaskService
from fleetwatch.storage import Database
from tests.conftest import login
from tests.query.task_client import TASKS, TaskClient, kind_query, task_body
from tests.receiver import running_receiver
from tests.server import running_server


def write_offline(settings: Settings, writes: list[Write]) -> None:
    async def run() -> None:
        db = Database(settings.effective_database_url())
        index = DocumentIndex(db)
        await index.start()
        await index.apply(writes)
        await db.dispose()

    asyncio.run(run())


#: The receiver listens on loopback, which webhooks may call only when allowed.
LOOPBACK = "127.0.0.0/8,::1/128"


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    return server_settings.model_copy(update={"outbound_allow": LOOPBACK})


def test_tasks_and_webhooks_resume_after_restart(server_settings: Settings) -> None:
    with running_receiver() as receiver:
        with running_server(server_settings) as server:
            tasks = TaskClient(server, login(server))
            count = tasks.create(
                task_body(kind_query("docs:p"), "CONTINUOUS", "COUNT", link="counter")
            )
            watch = tasks.create(
                task_body(kind_query("docs:p"), "CONTINUOUS", "EXPAND_CONTENT", link="watch")
            )
            tasks.create(task_body(kind_query("docs:p"), link="once"))
            cancelled = tasks.create(task_body(kind_query("docs:p"), "CONTINUOUS", link="gone"))
            tasks.http.patch(
                cancelled["documentSelfLink"], json={"taskInfo": {"stage": "CANCELLED"}}
            )
            tasks.http.post(
                f"{watch['documentSelfLink']}/subscriptions",
                json={"reference": receiver.endpoint("w")},
            )
            time.sleep(0.3)
            for i in range(4):
                tasks.doc("POST", "/docs/p", {"documentSelfLink": f"a{i}"})
            assert len(receiver.wait_for("w", 4)) == 4
            assert tasks.get(count["documentSelfLink"])["results"]["documentCount"] == 4
            tasks.close()
            server_port = server.settings.port

        # while the server is down, another writer changes the store
        write_offline(
            server.settings,
            [Write(Action.POST, f"/docs/p/b{i}", "docs:p", {}) for i in range(3)]
            + [Write(Action.DELETE, "/docs/p/a0")],
        )

        with running_server(server.settings) as again:
            assert again.settings.port == server_port
            tasks = TaskClient(again, login(again))
            listed = tasks.get(TASKS)["documentLinks"]
            assert sorted(listed) == sorted(
                [f"{TASKS}/counter", f"{TASKS}/watch", f"{TASKS}/once", f"{TASKS}/gone"]
            )
            state = tasks.get(f"{TASKS}/counter")
            assert state["taskInfo"]["stage"] == "STARTED"
            assert state["results"]["documentCount"] == 4 + 3 - 1
            assert state["results"]["continuousResults"]["documentCountAdded"] == 7
            assert state["results"]["continuousResults"]["documentCountDeleted"] == 1
            assert tasks.get(f"{TASKS}/gone")["taskInfo"]["stage"] == "CANCELLED"
            assert tasks.get(f"{TASKS}/once")["taskInfo"]["stage"] == "FINISHED"
            assert tasks.stats()["activeQueryFilterCount"] == 2  # counter and watch

            # the webhook gets the offline changes exactly once, then live ones
            got = receiver.wait_for("w", 8)
            links = [g["results"]["documentLinks"][0] for g in got]
            assert links[4:] == ["/docs/p/b0", "/docs/p/b1", "/docs/p/b2", "/docs/p/a0"]
            assert got[-1]["documentUpdateAction"] == "DELETE"
            tasks.doc("POST", "/docs/p", {"documentSelfLink": "c"})
            got = receiver.wait_for("w", 9)
            assert [g["results"]["documentLinks"][0] for g in got][8:] == ["/docs/p/c"]
            seqs = [g["seq"] for g in got]
            assert seqs == sorted(seqs) and len(set(seqs)) == 9

            # the resumed task streams as before
            with tasks.websocket(f"{TASKS}/watch") as ws:
                links, _, _ = ws.initial()
                assert sorted(links) == sorted(
                    [
                        "/docs/p/a1",
                        "/docs/p/a2",
                        "/docs/p/a3",
                        "/docs/p/b0",
                        "/docs/p/b1",
                        "/docs/p/b2",
                        "/docs/p/c",
                    ]
                )
            assert tasks.get(f"{TASKS}/counter")["results"]["documentCount"] == 7
            tasks.close()


async def test_a_save_cut_short_keeps_the_webhook_cursor(
    index: DocumentIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush cancelled inside its save (shutdown, lease lost) puts back the cursors it
    took, so the next save writes them: a restart must not re-deliver what was delivered."""
    hub = SubscriptionHub(index, queue_limit=1000)
    hub.start()
    service = QueryTaskService(index, hub, Settings(outbound_allow=LOOPBACK))
    with running_receiver() as receiver:
        _, task = await service.create(
            "local-query-tasks", task_body(kind_query("docs:c"), "CONTINUOUS", link="c")
        )
        hook = await service.add_webhook(
            str(task["documentSelfLink"]), {"reference": receiver.endpoint("c")}
        )
        (change,) = await index.apply([Write(Action.POST, "/docs/c/x", "docs:c", {})])
        assert isinstance(change, Change)
        row = service.webhooks.get(hook.id)
        assert row is not None
        for _ in range(500):
            if row.last_delivered_seq == change.seq:
                break
            await asyncio.sleep(0.01)
        assert row.last_delivered_seq == change.seq

        saving = asyncio.Event()

        async def stuck_save(*_args: object) -> None:
            saving.set()
            await asyncio.Event().wait()

        real_save = service.store.save
        monkeypatch.setattr(service.store, "save", stuck_save)
        flush = asyncio.create_task(service.flush())
        await saving.wait()
        flush.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flush
        monkeypatch.setattr(service.store, "save", real_save)
        await service.stop()  # the final save
    stored = {h.id: h for h in await service.store.load_webhooks()}
    assert stored[hook.id].last_delivered_seq == change.seq
    assert stored[hook.id].delivered_count == 1
