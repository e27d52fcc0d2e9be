"""Squashing (`fleetwatch.query.squash`): the buffer on its own with a given clock, and a
task's `squashMillis` over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.config import Settings
from fleetwatch.index.document import Action, Change
from fleetwatch.query.squash import Squasher
from fleetwatch.query.stream_events import LEAVES, Event, EventKind
from fleetwatch.query.stream_messages import Notification
from tests.query.task_client import TASKS, TaskClient, WsReader, kind_query, task_body
from tests.receiver import running_receiver
from tests.server import RunningServer

ACTIONS = {
    EventKind.ADDED: Action.POST,
    EventKind.UPDATED: Action.PATCH,
    EventKind.DELETED: Action.DELETE,
    EventKind.STOP_MATCH: Action.PATCH,
}


def note(seq: int, link: str, kind: EventKind, annotation: Any = None) -> Notification:
    change = Change(seq, link, "k", seq, ACTIONS[kind], 0, {"v": seq}, None)
    return Notification(seq, Event(change, kind, kind is not EventKind.ADDED), annotation)


def drain(squash: Squasher) -> list[Notification]:
    out = []
    while (taken := squash.take()) is not None:
        out.append(taken)
    return out


def test_the_first_change_goes_at_once_then_one_with_the_latest_state() -> None:
    squash = Squasher(1.0)
    squash.push(note(1, "a", EventKind.ADDED), 0.0)
    assert [n.seq for n in drain(squash)] == [1]
    squash.push(note(2, "a", EventKind.UPDATED), 0.1)
    squash.push(note(3, "a", EventKind.UPDATED), 0.2)
    squash.release(0.9)
    assert drain(squash) == [] and squash.next_due() == 1.0
    squash.release(1.0)
    [latest] = drain(squash)
    assert latest.seq == 3 and latest.event.change.body == {"v": 3}
    # quiet for a whole window: the next change goes at once again
    squash.push(note(4, "a", EventKind.UPDATED), 2.5)
    assert [n.seq for n in drain(squash)] == [4]


def test_a_new_document_stays_added_and_group_counts_merge() -> None:
    squash = Squasher(1.0)
    squash.push(note(1, "a", EventKind.STOP_MATCH, {"groupCounts": {"x": 0}}), 0.0)
    squash.push(note(2, "a", EventKind.ADDED, {"groupCounts": {"x": 1}}), 0.1)
    squash.push(note(3, "a", EventKind.UPDATED, {"groupCounts": {"x": 0, "y": 1}}), 0.2)
    squash.flush(0.3)
    left, back = drain(squash)
    assert left.event.kind is EventKind.STOP_MATCH
    assert back.event.kind is EventKind.ADDED and back.seq == 3
    assert back.annotation == {"groupCounts": {"x": 0, "y": 1}}


def test_a_delete_is_never_squashed_away() -> None:
    squash = Squasher(1.0)
    squash.push(note(1, "a", EventKind.ADDED), 0.0)
    squash.push(note(2, "a", EventKind.DELETED), 0.1)  # held: it is the latest state
    squash.push(note(3, "a", EventKind.ADDED), 0.2)  # re-created: the delete goes first
    assert [(n.seq, n.event.kind) for n in drain(squash)] == [
        (1, EventKind.ADDED),
        (2, EventKind.DELETED),
    ]
    squash.release(1.2)
    assert [n.seq for n in drain(squash)] == [3]


def test_a_notification_sent_past_a_held_one_carries_a_cursor_before_it() -> None:
    squash = Squasher(1.0)
    squash.push(note(1, "a", EventKind.ADDED), 0.0)
    squash.push(note(5, "a", EventKind.UPDATED), 0.1)  # held
    squash.push(note(6, "b", EventKind.ADDED), 0.2)  # b is quiet: goes now
    first, other = drain(squash)
    assert (first.seq, other.seq) == (1, 4)  # resuming after 4 replays a's change 5
    assert other.event.seq == 6
    squash.release(1.0)
    assert [n.seq for n in drain(squash)] == [5]
    assert squash.cursor == 6


def _apply(state: dict[str, Any], event: Event) -> None:
    if event.kind in LEAVES:
        state.pop(event.change.self_link, None)
    else:
        state[event.change.self_link] = event.change.body


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[float, Notification]]:
    """A valid stream of events of a few documents, at non-decreasing times."""
    inside: set[str] = set()
    out = []
    now = 0.0
    for seq in range(1, draw(st.integers(0, 40)) + 1):
        now += draw(st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.5]))
        link = draw(st.sampled_from("abc"))
        if link in inside:
            kind = draw(st.sampled_from([EventKind.UPDATED, *LEAVES]))
        else:
            kind = EventKind.ADDED
        (inside.discard if kind in LEAVES else inside.add)(link)
        out.append((now, note(seq, link, kind)))
    return out


@given(streams(), st.sampled_from([0.2, 0.5, 1.0, 2.0]))
def test_squashed_final_state_and_every_resume_equal_the_unsquashed(
    events: list[tuple[float, Notification]], window: float
) -> None:
    """Property: applying the squashed notifications gives the unsquashed final state, their
    cursors never go back, and resuming the unsquashed stream after any cursor, from the
    state the notifications up to it gave, ends in that state too (nothing is lost)."""
    squash = Squasher(window)
    sent: list[Notification] = []
    for now, n in events:
        squash.release(now)
        squash.push(n, now)
        sent.extend(drain(squash))
    squash.flush(events[-1][0] if events else 0.0)
    sent.extend(drain(squash))

    expected: dict[str, Any] = {}
    for _, n in events:
        _apply(expected, n.event)
    state: dict[str, Any] = {}
    for n in sent:
        _apply(state, n.event)
    assert state == expected
    assert [n.seq for n in sent] == sorted(n.seq for n in sent)
    for i, cut in enumerate(sent):
        resumed: dict[str, Any] = {}
        for n in sent[: i + 1]:
            _apply(resumed, n.event)
        for _, n in events:
            if n.seq > cut.seq:
                _apply(resumed, n.event)
        assert resumed == expected


# --- over HTTP -------------------------------------------------------------------------

#: Long enough that a test's burst of writes falls within one window on a loaded machine.
WINDOW_MILLIS = 4000


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    return server_settings.model_copy(update={"outbound_allow": "127.0.0.0/8,::1/128"})


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


def _watch(kind: str, **extra: Any) -> dict[str, Any]:
    body = task_body(
        kind_query(f"docs:{kind}", ok="yes"),
        "CONTINUOUS",
        "CONTINUOUS_STOP_MATCH",
        "EXPAND_CONTENT",
    )
    body.update(extra)
    return body


def _messages(ws: WsReader, count: int) -> list[dict[str, Any]]:
    out = ws.take(count, timeout=WINDOW_MILLIS / 1000 + 20)
    assert ws.quiet(1.0)
    return out


def _final(messages: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for message in messages:
        (link,) = message["results"]["documentLinks"]
        if message["event"] in ("deleted", "stopMatch"):
            state.pop(link, None)
        else:
            state[link] = message["results"]["documents"][link]["n"]
    return state


def _burst(tasks: TaskClient, path: str) -> None:
    """Writes within one window: a's four updates, b leaving, c added and deleted."""
    for n in range(1, 5):
        tasks.doc("PATCH", f"{path}/a", {"n": n})
    tasks.doc("PATCH", f"{path}/b", {"ok": "no"})
    tasks.doc("POST", path, {"documentSelfLink": "c", "ok": "yes", "n": 0})
    tasks.doc("DELETE", f"{path}/c")


def test_squash_millis_sends_one_change_per_document_and_window(tasks: TaskClient) -> None:
    kind = f"s{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    for name in ("a", "b"):
        tasks.doc("POST", path, {"documentSelfLink": name, "ok": "yes", "n": 0})
    squashed = tasks.create(_watch(kind, squashMillis=WINDOW_MILLIS))
    assert squashed["squashMillis"] == WINDOW_MILLIS
    plain = tasks.create(_watch(kind))
    with (
        tasks.websocket(squashed["documentSelfLink"]) as sq,
        tasks.websocket(plain["documentSelfLink"]) as pl,
    ):
        sq.initial()
        pl.initial()
        tasks.doc("PATCH", f"{path}/a", {"n": 9})
        first = sq.next()  # a was quiet: at once, before its window ends
        assert first["event"] == "updated" and first["results"]["documents"][f"{path}/a"]["n"] == 9
        _burst(tasks, path)
        # b and c were quiet: b's stop-match and c's add go at once; then, when the windows
        # end, a's latest state (one message for four updates) and c's delete, kept
        squashed_out = [first, *_messages(sq, 4)]
        plain_out = _messages(pl, 8)
    events = [(m["event"], m["results"]["documentLinks"][0]) for m in squashed_out]
    assert events[:3] == [
        ("updated", f"{path}/a"),
        ("stopMatch", f"{path}/b"),
        ("added", f"{path}/c"),
    ]
    assert sorted(events[3:]) == [("deleted", f"{path}/c"), ("updated", f"{path}/a")]
    latest = next(m for m in squashed_out[3:] if m["event"] == "updated")
    assert latest["results"]["documents"][f"{path}/a"]["n"] == 4
    assert _final(squashed_out) == _final(plain_out) == {f"{path}/a": 4}
    seqs = [m["seq"] for m in squashed_out]
    assert seqs == sorted(seqs)


def test_webhooks_get_the_squashed_stream(tasks: TaskClient) -> None:
    kind = f"w{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    tasks.doc("POST", path, {"documentSelfLink": "a", "ok": "yes", "n": 0})
    link = tasks.create(_watch(kind, squashMillis=WINDOW_MILLIS))["documentSelfLink"]
    with running_receiver() as receiver:
        reply = tasks.http.post(f"{link}/subscriptions", json={"reference": receiver.endpoint("s")})
        assert reply.status_code == 200, reply.text
        tasks.wait_stats("webhookWorkers", 1)
        for n in range(1, 6):
            tasks.doc("PATCH", f"{path}/a", {"n": n})
        first, latest = receiver.wait_for("s", 2)
        assert first["results"]["documents"][f"{path}/a"]["n"] == 1
        assert latest["results"]["documents"][f"{path}/a"]["n"] == 5
        time.sleep(1.0)
        assert len(receiver.bodies("s")) == 2  # nothing else came: four squashed into one


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"squashMillis": -1}, "squashMillis: must be between 0 and 60000"),
        ({"squashMillis": 60_001}, "squashMillis: must be between 0 and 60000"),
        ({"squashMillis": "soon"}, "squashMillis: Input should be a valid integer"),
    ],
)
def test_bad_squash_millis_is_refused(
    tasks: TaskClient, extra: dict[str, Any], message: str
) -> None:
    reply = tasks.http.post(TASKS, json=_watch("none", **extra))
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(message)
    one_shot = {**task_body(kind_query("docs:none")), "squashMillis": 10}
    reply = tasks.http.post(TASKS, json=one_shot)
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("squashMillis: only used by continuous tasks")
