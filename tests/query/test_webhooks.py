"""Webhook subscriptions against a real HTTP receiver, on both backends.

Ordered PATCH deliveries, replayState, retry with backoff, drop after the failure limit
with the reason recorded, and isolation: a failing or hanging callback harms no one else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fleetwatch.config import Settings
from tests.query.receiver import Receiver, running_receiver
from tests.query.task_client import TaskClient, kind_query, query, task_body, term
from tests.server import RunningServer


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    return server_settings.model_copy(
        update={"webhook_failure_limit": 3, "webhook_retry_base": 0.05, "webhook_timeout": 0.5}
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
    subscribe(tasks, link, receiver.hook("replay"), replay=True)
    subscribe(tasks, link, receiver.hook("plain"))
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
    subscribe(tasks, link, receiver.hook("r"), replay=True)
    (replay,) = receiver.wait_for("r", 1)
    assert "/docs/r/one" in replay["results"]["documentLinks"]


def test_failing_and_hanging_callbacks_are_dropped_without_harm(
    tasks: TaskClient, receiver: Receiver
) -> None:
    link = tasks.create(task_body(kind_query("docs:f"), "CONTINUOUS"))["documentSelfLink"]
    other = tasks.create(task_body(kind_query("docs:f"), "CONTINUOUS"))["documentSelfLink"]
    failing = subscribe(tasks, link, receiver.hook("fail", "fail"))
    hanging = subscribe(tasks, link, receiver.hook("hang", "hang"))
    subscribe(tasks, link, receiver.hook("good"))
    subscribe(tasks, other, receiver.hook("other"))
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
    assert "3 consecutive failed deliveries" in str(states[failing]["failureReason"])
    assert "HTTP 500" in str(states[failing]["failureReason"])
    assert states[hanging]["state"] == "dropped"
    assert "Timeout" in str(states[hanging]["failureReason"])
    assert receiver.attempts["fail"] == 3
    assert tasks.stats()["webhookWorkers"] == 2  # the two healthy ones keep running


def test_flaky_callback_is_retried_in_order(tasks: TaskClient, receiver: Receiver) -> None:
    link = tasks.create(task_body(kind_query("docs:k"), "CONTINUOUS"))["documentSelfLink"]
    hook = subscribe(tasks, link, receiver.hook("flaky", "flaky:2"))
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
    hook = subscribe(tasks, link, receiver.hook("u"))
    assert tasks.http.delete(hook).status_code == 200
    assert tasks.get(f"{link}/subscriptions")["subscribers"] == []
    assert tasks.http.delete(hook).status_code == 404
    subscribe(tasks, link, receiver.hook("v"))
    gone = tasks.http.request(
        "DELETE", f"{link}/subscriptions", json={"reference": receiver.hook("v")}
    )
    assert gone.status_code == 200 and len(gone.json()["removed"]) == 1
    tasks.doc("POST", "/docs/u", {"documentSelfLink": "x"})
    time.sleep(0.5)
    assert receiver.bodies("u") == [] and receiver.bodies("v") == []
