"""Webhook subscriptions against a real HTTP receiver, on both backends.

Ordered PATCH deliveries, replayState, retry with backoff, drop after the failure limit
with the reason recorded, and isolation: a failing or hanging callback harms no one else.
The outbound policy: inside addresses refused unless `outbound_allow` (these servers allow
loopback, where the receiver listens), checked again at delivery; failure reasons never
tell what the callback answered; per-task limit and duplicates.

Names resolve through a stub resolver put into the server; no packet leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.index.document import JsonObject
from fleetwatch.query.stream_messages import Message, Notification
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.task_requests import FACTORIES, NEVER, SYSTEM_BASE, TaskError
from fleetwatch.query.tasks import QueryTaskService
from fleetwatch.query.webhooks import Delivery
from tests.conftest import login
from tests.outbound.stub_resolver import StubResolver
from tests.query.task_client import TaskClient, kind_query, query, task_body, term
from tests.receiver import EVENTS, INTERNAL_ANSWER, Receiver, running_receiver
from tests.server import RunningServer, running_server
from tests.services import free_port

#: The receiver listens on loopback, which webhooks may call only when allowed.
LOOPBACK = "127.0.0.0/8,::1/128"
#: What a failure reason says of a callback that answered an error or could not be reached.
FAILED = "dropped after 3 consecutive failed deliveries; last: failed"


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    return server_settings.model_copy(
        update={
            "webhook_failure_limit": 3,
            "webhook_retry_base": 0.05,
            "webhook_timeout": 0.5,
            "outbound_allow": LOOPBACK,
        }
    )


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def subscribe(tasks: TaskClient, link: str, reference: str, replay: bool = False) -> str:
    reply = tasks.http.post(
        f"{link}/subscriptions", json={"reference": reference, "replayState": replay}
    )
    assert reply.status_code == 200, reply.text
    self_link: str = reply.json()["documentSelfLink"]
    return self_link


def test_deliveries_are_ordered_patches_with_replay(tasks: TaskClient, receiver: Receiver) -> None:
    tasks.doc("POST", "/docs/w", {"documentSelfLink": "old", "n": 0})
    link = tasks.create(task_body(kind_query("docs:w"), "CONTINUOUS", "EXPAND_CONTENT"))[
        "documentSelfLink"
    ]
    subscribe(tasks, link, receiver.endpoint("replay"), replay=True)
    subscribe(tasks, link, receiver.endpoint("plain"))
    time.sleep(0.3)  # let the plain subscriber start before the writes
    for i in range(20):
        tasks.doc("POST", "/docs/w", {"documentSelfLink": f"d{i}", "n": i})
    replayed = receiver.wait_for("replay", 21)
    assert replayed[0]["type"] == "initial"
    assert replayed[0]["results"]["documentLinks"] == ["/docs/w/old"]
    assert replayed[0]["documentSelfLink"] == link
    changes = replayed[1:]
    assert [c["results"]["documentLinks"][0] for c in changes] == [
        f"/docs/w/d{i}" for i in range(20)
    ]
    seqs = [c["seq"] for c in changes]
    assert seqs == sorted(seqs) and seqs[0] > replayed[0]["seq"]
    assert all(c["documentUpdateAction"] == "POST" for c in changes)
    plain = receiver.wait_for("plain", 20)
    assert [c["seq"] for c in plain] == seqs  # no initial results without replayState
    listed = tasks.get(f"{link}/subscriptions")["subscribers"]
    counts = {s["reference"].rsplit("/", 1)[1]: s["notificationCount"] for s in listed}
    deadline = time.monotonic() + 10
    while counts != {"replay": 21, "plain": 20} and time.monotonic() < deadline:
        time.sleep(0.05)
        listed = tasks.get(f"{link}/subscriptions")["subscribers"]
        counts = {s["reference"].rsplit("/", 1)[1]: s["notificationCount"] for s in listed}
    assert counts == {"replay": 21, "plain": 20}
    assert all(s["state"] == "active" for s in listed)


def test_xenon_replay_scenario(tasks: TaskClient, receiver: Receiver) -> None:
    """continuousQueryTaskWithReplay: a WILDCARD * task, subscribed with replayState."""
    tasks.doc("POST", "/docs/r", {"documentSelfLink": "one"})
    link = tasks.create(
        task_body(
            query(term("documentSelfLink", "*", match="WILDCARD")), "CONTINUOUS", expiration=None
        )
    )["documentSelfLink"]
    assert tasks.get(link)["results"]["documentLinks"]
    subscribe(tasks, link, receiver.endpoint("r"), replay=True)
    (replay,) = receiver.wait_for("r", 1)
    assert "/docs/r/one" in replay["results"]["documentLinks"]


def test_failing_and_hanging_callbacks_are_dropped_without_harm(
    tasks: TaskClient, receiver: Receiver
) -> None:
    link = tasks.create(task_body(kind_query("docs:f"), "CONTINUOUS"))["documentSelfLink"]
    other = tasks.create(task_body(kind_query("docs:f"), "CONTINUOUS"))["documentSelfLink"]
    failing = subscribe(tasks, link, receiver.endpoint("fail", "fail"))
    hanging = subscribe(tasks, link, receiver.endpoint("hang", "hang"))
    subscribe(tasks, link, receiver.endpoint("good"))
    subscribe(tasks, other, receiver.endpoint("other"))
    time.sleep(0.3)
    started = time.monotonic()
    for i in range(10):
        tasks.doc("POST", "/docs/f", {"documentSelfLink": f"d{i}"})
    writes_took = time.monotonic() - started
    assert len(receiver.wait_for("good", 10)) == 10
    assert len(receiver.wait_for("other", 10)) == 10
    assert writes_took < 10  # the write path never waited for a callback

    deadline = time.monotonic() + 30
    states: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        states = {
            s["documentSelfLink"]: s for s in tasks.get(f"{link}/subscriptions")["subscribers"]
        }
        if states[failing]["state"] == "dropped" and states[hanging]["state"] == "dropped":
            break
        time.sleep(0.1)
    assert states[failing]["state"] == "dropped"
    # what the callback answered (its status, its body) is not shown to the user
    assert states[failing]["failureReason"] == FAILED
    assert INTERNAL_ANSWER not in str(states)
    assert states[hanging]["state"] == "dropped"
    assert states[hanging]["failureReason"] == FAILED
    assert receiver.attempts["fail"] == 3
    assert tasks.stats()["webhookWorkers"] == 2  # the two healthy ones keep running


def test_flaky_callback_is_retried_in_order(tasks: TaskClient, receiver: Receiver) -> None:
    link = tasks.create(task_body(kind_query("docs:k"), "CONTINUOUS"))["documentSelfLink"]
    hook = subscribe(tasks, link, receiver.endpoint("flaky", "flaky:2"))
    time.sleep(0.3)
    for i in range(5):
        tasks.doc("POST", "/docs/k", {"documentSelfLink": f"d{i}"})
    got = receiver.wait_for("flaky", 5)
    assert [g["results"]["documentLinks"][0] for g in got] == [f"/docs/k/d{i}" for i in range(5)]
    state = {s["documentSelfLink"]: s for s in tasks.get(f"{link}/subscriptions")["subscribers"]}
    assert state[hook]["state"] == "active" and state[hook]["failedNotificationCount"] == 0


def test_unsubscribe_and_bad_subscriptions(tasks: TaskClient, receiver: Receiver) -> None:
    link = tasks.create(task_body(kind_query("docs:u"), "CONTINUOUS"))["documentSelfLink"]
    once = tasks.create(task_body(kind_query("docs:u")))["documentSelfLink"]
    for body in (
        {"reference": "ftp://x"},
        {"reference": 3},
        {},
        {"reference": "http://x", "replayState": "yes"},
    ):
        reply = tasks.http.post(f"{link}/subscriptions", json=body)
        assert reply.status_code == 400 and reply.json()["error"]
    assert (
        tasks.http.post(f"{once}/subscriptions", json={"reference": "http://x"}).status_code == 400
    )
    hook = subscribe(tasks, link, receiver.endpoint("u"))
    assert tasks.http.delete(hook).status_code == 200
    assert tasks.get(f"{link}/subscriptions")["subscribers"] == []
    assert tasks.http.delete(hook).status_code == 404
    subscribe(tasks, link, receiver.endpoint("v"))
    gone = tasks.http.request(
        "DELETE", f"{link}/subscriptions", json={"reference": receiver.endpoint("v")}
    )
    assert gone.status_code == 200 and len(gone.json()["removed"]) == 1
    tasks.doc("POST", "/docs/u", {"documentSelfLink": "x"})
    time.sleep(0.5)
    assert receiver.bodies("u") == [] and receiver.bodies("v") == []


def subscription(tasks: TaskClient, link: str, hook: str, state: str) -> dict[str, object]:
    """The subscription `hook` of task `link` once it is in `state` (or after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        listed = {
            s["documentSelfLink"]: s for s in tasks.get(f"{link}/subscriptions")["subscribers"]
        }
        found: dict[str, object] = listed[hook]
        if found["state"] == state or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def strict_tasks(server_settings: Settings) -> Iterator[tuple[TaskClient, RunningServer]]:
    """A server with the default policy: no inside address allowed."""
    with running_server(server_settings.model_copy(update={"outbound_allow": ""})) as server:
        client = TaskClient(server, login(server))
        yield client, server
        client.close()


def test_inside_callbacks_are_refused_by_default(
    strict_tasks: tuple[TaskClient, RunningServer], receiver: Receiver
) -> None:
    tasks, server = strict_tasks
    link = tasks.create(task_body(kind_query("docs:s"), "CONTINUOUS"))["documentSelfLink"]
    port = receiver.url.rsplit(":", 1)[1]

    def refused(reference: str, reason: str) -> None:
        reply = tasks.http.post(f"{link}/subscriptions", json={"reference": reference})
        assert reply.status_code == 400, (reference, reply.text)
        error = reply.json()["error"]
        assert error.startswith("reference: ") and reason in error, (reference, error)
        assert "outbound_allow" in error

    refused(receiver.endpoint("s"), "address 127.0.0.1 is loopback")
    refused(f"http://0x7f000001:{port}/hook/s", "address 127.0.0.1 is loopback")
    refused(f"http://2130706433:{port}/hook/s", "address 127.0.0.1 is loopback")
    refused(f"http://127.1:{port}/hook/s", "address 127.0.0.1 is loopback")
    refused(f"http://[::1]:{port}/hook/s", "address ::1 is loopback")
    refused(f"http://[::ffff:127.0.0.1]:{port}/hook/s", "is loopback")
    refused("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is link-local")
    refused("http://10.0.0.1:6379/", "address 10.0.0.1 is private")
    refused("http://0.0.0.0:22/", "address 0.0.0.0 is unspecified")
    stub = StubResolver(
        {
            "private.invalid": ["10.0.0.1"],
            "metadata.invalid": ["169.254.169.254"],
            "mapped.invalid": ["::ffff:127.0.0.1"],
        }
    )
    server.services.query_tasks.webhooks.guard.resolver = stub
    refused("http://private.invalid/x", "host private.invalid resolves to a private address")
    refused("http://metadata.invalid/x", "host metadata.invalid resolves to a link-local address")
    refused("http://mapped.invalid/x", "host mapped.invalid resolves to a loopback address")
    assert stub.calls == ["private.invalid", "metadata.invalid", "mapped.invalid"]
    assert tasks.get(f"{link}/subscriptions")["subscribers"] == []
    unknown = tasks.http.post(f"{link}/subscriptions", json={"reference": "http://none.invalid/"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "reference: host none.invalid does not resolve"


def test_a_name_rebound_inside_is_refused_at_delivery(
    tasks: TaskClient, live_server: RunningServer, receiver: Receiver
) -> None:
    """Accepted while the name pointed at an allowed address; when it points inside at
    delivery time the connection is refused before it is made."""
    stub = StubResolver({"rebind.invalid": ["127.0.0.1"], "pinned.invalid": ["127.0.0.1"]})
    live_server.services.query_tasks.webhooks.guard.resolver = stub
    link = tasks.create(task_body(kind_query("docs:b"), "CONTINUOUS"))["documentSelfLink"]
    port = receiver.url.rsplit(":", 1)[1]
    receiver.endpoint("rebound")
    receiver.endpoint("pinned")
    rebound = subscribe(tasks, link, f"http://rebind.invalid:{port}/hook/rebound")
    subscribe(tasks, link, f"http://pinned.invalid:{port}/hook/pinned")
    assert stub.calls == ["rebind.invalid", "pinned.invalid"]  # checked when subscribed
    stub.answers["rebind.invalid"] = ["10.0.0.1"]
    time.sleep(0.3)
    tasks.doc("POST", "/docs/b", {"documentSelfLink": "one"})
    assert len(receiver.wait_for("pinned", 1)) == 1  # the name is delivered to, pinned
    state = subscription(tasks, link, rebound, "dropped")
    assert state["state"] == "dropped"
    assert state["failureReason"] == (
        "dropped after 3 consecutive failed deliveries; last: refused: host rebind.invalid "
        "resolves to a private address; the operator can allow its range with outbound_allow"
    )
    assert "rebound" not in receiver.attempts  # no connection was made
    assert stub.calls.count("rebind.invalid") == 4  # the subscription check, then 3 attempts


def test_unreachable_callback_reason_does_not_say_why(tasks: TaskClient) -> None:
    link = tasks.create(task_body(kind_query("docs:x"), "CONTINUOUS"))["documentSelfLink"]
    dead = subscribe(tasks, link, f"http://127.0.0.1:{free_port()}/hook")
    time.sleep(0.3)
    tasks.doc("POST", "/docs/x", {"documentSelfLink": "one"})
    state = subscription(tasks, link, dead, "dropped")
    assert state["failureReason"] == FAILED  # not "connection refused": no port scanning


def test_subscriptions_per_task_are_limited_and_unique(
    tasks: TaskClient, receiver: Receiver
) -> None:
    link = tasks.create(task_body(kind_query("docs:l"), "CONTINUOUS"))["documentSelfLink"]
    other = tasks.create(task_body(kind_query("docs:l"), "CONTINUOUS"))["documentSelfLink"]
    first = subscribe(tasks, link, receiver.endpoint("l0"))
    again = tasks.http.post(f"{link}/subscriptions", json={"reference": receiver.endpoint("l0")})
    assert again.status_code == 409
    assert "already has subscription" in again.json()["error"]
    assert f"DELETE {first}" in again.json()["error"]
    for i in range(1, 20):
        subscribe(tasks, link, receiver.endpoint(f"l{i}"))
    over = tasks.http.post(f"{link}/subscriptions", json={"reference": receiver.endpoint("l20")})
    assert over.status_code == 429
    assert "(max_webhooks_per_task = 20)" in over.json()["error"]
    assert len(tasks.get(f"{link}/subscriptions")["subscribers"]) == 20
    subscribe(tasks, other, receiver.endpoint("l20"))  # the limit is per task
    assert tasks.http.delete(first).status_code == 200
    subscribe(tasks, link, receiver.endpoint("l20"))  # room again


async def test_workers_share_one_http_client(
    index: DocumentIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription costs a worker and a queue, not a client with its own pool and TLS
    context (500 subscriptions once took 400 MB)."""
    made: list[httpx.AsyncClient] = []
    real_init = httpx.AsyncClient.__init__

    def counting_init(client: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        made.append(client)
        real_init(client, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    hub = SubscriptionHub(index, queue_limit=1000)
    hub.start()
    service = QueryTaskService(index, hub, Settings(outbound_allow=LOOPBACK))
    with running_receiver() as receiver:
        _, task = await service.create(
            "local-query-tasks", task_body(kind_query("docs:o"), "CONTINUOUS", link="o")
        )
        for i in range(5):
            await service.add_webhook(
                str(task["documentSelfLink"]), {"reference": receiver.endpoint(f"o{i}")}
            )
        await asyncio.sleep(0.2)  # the workers subscribe before the write
        await index.apply([Write(Action.POST, "/docs/o/x", "docs:o", {})])
        for _ in range(1000):
            if all(receiver.bodies(f"o{i}") for i in range(5)):
                break
            await asyncio.sleep(0.01)
        assert all(len(receiver.bodies(f"o{i}")) == 1 for i in range(5))
        await service.stop()
        await hub.stop()
    assert len(made) == 1


async def test_a_task_kind_delivers_its_own_way(index: DocumentIndex) -> None:
    """A registered `Delivery`: its own body (None: nothing sent, the cursor moves on), its
    HTTP method, and no drop however many attempts fail. The server's own task is under
    no factory and never expires."""
    hub = SubscriptionHub(index, queue_limit=1000)
    hub.start()
    service = QueryTaskService(
        index,
        hub,
        Settings(outbound_allow=LOOPBACK, webhook_failure_limit=2, webhook_retry_base=0.01),
    )

    def even_only(link: str, message: Message) -> JsonObject | None:
        if not isinstance(message, Notification):
            return None
        n = int(message.event.change.body["n"])
        return {"n": n, "seq": message.seq} if n % 2 == 0 else None

    service.webhooks.register(SYSTEM_BASE + "/own-", Delivery(even_only, "POST", drops=False))
    await service.start()
    with running_receiver(EVENTS) as receiver:
        link = await service.ensure_system("own-1", task_body(kind_query("docs:k"), "CONTINUOUS"))
        assert await service.ensure_system("own-1", {"bad": "never read"}) == link
        assert link == f"{SYSTEM_BASE}/own-1"
        assert all(not service.links(factory) for factory in FACTORIES)
        assert service.get(link).expiration_micros == NEVER
        row = await service.subscribe_webhook(link, receiver.endpoint("k", "flaky:5"), False)
        await asyncio.sleep(0.2)  # the worker subscribes before the writes
        for n in range(6):
            await index.apply([Write(Action.POST, f"/docs/k/{n}", "docs:k", {"n": n})])
        for _ in range(1000):
            if len(receiver.bodies("k")) == 3:
                break
            await asyncio.sleep(0.01)
        assert [b["n"] for b in receiver.bodies("k")] == [0, 2, 4]
        assert receiver.attempts["k"] == 5 + 3  # five failures (over the limit of 2), kept
        for _ in range(1000):
            if row.last_delivered_seq == hub.position:
                break
            await asyncio.sleep(0.01)
        assert row.last_delivered_seq == hub.position  # past the last (skipped) change
        assert row.state == "active"
        await service.remove_system("own-1", "done")
        with pytest.raises(TaskError):
            service.get(link)
        assert await service.store.load_webhooks() == []
        await service.stop()
        await hub.stop()
