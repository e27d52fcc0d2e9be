"""The subscription hub on both backends: snapshot + stream, replay, resync, stop-match."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.config import async_database_url
from fleetwatch.index import Action, DocumentIndex, Write, now_micros
from fleetwatch.index.retention import ChangeLogRetention
from fleetwatch.query.spec import Query, parse_query
from fleetwatch.query.stream_events import EventKind, StreamMode
from fleetwatch.query.stream_messages import (
    Closed,
    Current,
    Initial,
    Message,
    Notification,
    ResumeTooOld,
    Resync,
    UnknownStream,
)
from fleetwatch.query.subscription import Subscription
from fleetwatch.query.subscriptions import SubscriptionHub, documents_loader
from fleetwatch.storage import Database


def kind_query(kind: str, **equals: str) -> Query:
    clauses = [{"term": {"propertyName": "documentKind", "matchValue": kind}}]
    clauses += [{"term": {"propertyName": k, "matchValue": v}} for k, v in equals.items()]
    return parse_query({"booleanClauses": clauses})


@pytest.fixture
async def hub(index: DocumentIndex) -> AsyncIterator[SubscriptionHub]:
    hub = SubscriptionHub(index, queue_limit=10_000)
    hub.start()
    yield hub
    await hub.stop()


async def take(sub: Subscription, n: int, timeout: float = 20.0) -> list[Message]:
    """The next n messages (fails the test if they do not come)."""
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await anext(sub))
    return out


async def nothing_more(sub: Subscription) -> bool:
    """True if no message is waiting (after letting the loop run)."""
    await asyncio.sleep(0.05)
    try:
        async with asyncio.timeout(0.2):
            await anext(sub)
    except TimeoutError:
        return True
    return False


async def test_initial_results_then_one_notification_per_change(
    index: DocumentIndex, hub: SubscriptionHub
) -> None:
    await index.write(Write(Action.POST, "/e/1", "emp", {"name": "ann"}))
    await index.write(Write(Action.POST, "/x/1", "other", {"name": "bob"}))
    sub = await hub.subscribe_query(kind_query("emp"))
    (initial,) = await take(sub, 1)
    assert isinstance(initial, Initial) and initial.last
    assert [b["documentSelfLink"] for b in initial.payload] == ["/e/1"]
    assert sub.position == initial.seq == index.last_seq

    await index.write(Write(Action.POST, "/e/2", "emp", {"name": "cy"}))
    await index.write(Write(Action.PATCH, "/e/1", body={"age": 3}))
    await index.write(Write(Action.POST, "/x/2", "other", {}))  # not matching
    await index.write(Write(Action.DELETE, "/e/2"))
    notes = await take(sub, 3)
    assert all(isinstance(n, Notification) for n in notes)
    got = [(n.event.change.self_link, n.event.kind) for n in notes if isinstance(n, Notification)]
    assert got == [
        ("/e/2", EventKind.ADDED),
        ("/e/1", EventKind.UPDATED),
        ("/e/2", EventKind.DELETED),
    ]
    deleted = notes[2]
    assert isinstance(deleted, Notification)
    assert deleted.event.change.body["documentUpdateAction"] == "DELETE"
    assert deleted.event.reason == "the document was deleted"
    assert await nothing_more(sub)
    assert hub.active_filters == 1
    await sub.aclose()
    assert hub.active_filters == 0  # the ad-hoc stream goes with its subscriber


async def test_writes_racing_the_subscription_are_neither_lost_nor_repeated(
    index: DocumentIndex, hub: SubscriptionHub
) -> None:
    total = 300

    async def writer() -> None:
        for i in range(total):
            await index.write(Write(Action.POST, f"/r/{i}", "race", {"i": i}))
            if i % 7 == 0:
                await asyncio.sleep(0)

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0.01)  # let some writes land first
    sub = await hub.subscribe_query(kind_query("race"))
    await writing
    seen: list[str] = []
    async with asyncio.timeout(30):
        while len(seen) < total:
            message = await anext(sub)
            if isinstance(message, Initial):
                seen.extend(b["documentSelfLink"] for b in message.payload)
            else:
                assert isinstance(message, Notification)
                assert message.event.kind is EventKind.ADDED
                seen.append(message.event.change.self_link)
    assert sorted(seen) == sorted(f"/r/{i}" for i in range(total))
    assert len(set(seen)) == total
    assert await nothing_more(sub)


async def test_since_replays_the_log_then_continues_live(
    index: DocumentIndex, hub: SubscriptionHub
) -> None:
    await hub.open_stream("s", kind_query("k"))
    start = index.last_seq
    for i in range(25):
        await index.write(Write(Action.POST, f"/k/{i}", "k", {"i": i}))
        await index.write(Write(Action.POST, f"/n/{i}", "n", {"i": i}))
    hub.replay_batch = 7  # several replay steps

    async def more() -> None:
        for i in range(25, 40):
            await index.write(Write(Action.POST, f"/k/{i}", "k", {"i": i}))

    sub = await hub.subscribe("s", since=start)
    writing = asyncio.create_task(more())
    notes = await take(sub, 40)
    await writing
    links = [n.event.change.self_link for n in notes if isinstance(n, Notification)]
    assert links == [f"/k/{i}" for i in range(40)]
    seqs = [n.seq for n in notes]
    assert seqs == sorted(seqs) and len(set(seqs)) == 40
    assert await nothing_more(sub)
    # resuming from the middle gives exactly the rest
    middle = notes[19].seq
    again = await hub.subscribe("s", since=middle)
    rest = await take(again, 20)
    assert [m.seq for m in rest] == seqs[20:]
    assert await nothing_more(again)


async def test_overrun_subscriber_gets_resync_and_resumes_without_loss(
    index: DocumentIndex,
) -> None:
    hub = SubscriptionHub(index, queue_limit=5)
    hub.start()
    try:
        await hub.open_stream("s", kind_query("k"))
        sub = await hub.subscribe("s")
        other = await hub.subscribe("s", since=index.last_seq)
        await index.apply([Write(Action.POST, f"/k/{i}", "k", {"i": i}) for i in range(20)])
        # detached at once: the queue never grows past the limit
        assert sub not in hub.stream("s").subscribers  # type: ignore[union-attr]
        assert sub.queued == 5
        messages = await take(sub, 6)
        assert all(isinstance(m, Notification) for m in messages[:5])
        resync = messages[5]
        assert isinstance(resync, Resync) and resync.seq == messages[4].seq
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
        resumed = await hub.subscribe("s", since=resync.seq)
        rest = await take(resumed, 15)
        links = [
            m.event.change.self_link for m in messages[:5] + rest if isinstance(m, Notification)
        ]
        assert links == [f"/k/{i}" for i in range(20)]
        assert await nothing_more(resumed)
        # the replaying subscriber overran too: it gets what its replay read, then Resync
        replayed = await take(other, 21)
        assert [m.event.change.self_link for m in replayed[:20] if isinstance(m, Notification)] == [
            f"/k/{i}" for i in range(20)
        ]
        assert isinstance(replayed[20], Resync) and replayed[20].seq == replayed[19].seq
    finally:
        await hub.stop()


async def test_stop_match_reports_leaving_with_a_reason(
    index: DocumentIndex, hub: SubscriptionHub
) -> None:
    await index.write(Write(Action.POST, "/d/1", "k", {"color": "red"}))
    await hub.open_stream(
        "stop", kind_query("k", color="red"), mode=StreamMode(notify_match=False, notify_leave=True)
    )
    await hub.open_stream("both", kind_query("k", color="red"), mode=StreamMode(True, True))
    await hub.open_stream("plain", kind_query("k", color="red"))
    subs = {key: await hub.subscribe(key) for key in ("stop", "both", "plain")}
    await index.write(Write(Action.PATCH, "/d/1", body={"color": "blue"}))  # leaves
    await index.write(Write(Action.PATCH, "/d/1", body={"color": "red"}))  # enters
    await index.write(Write(Action.PATCH, "/d/1", body={"size": 2}))  # stays
    await index.write(Write(Action.DELETE, "/d/1"))

    def kinds(messages: list[Message]) -> list[EventKind]:
        return [m.event.kind for m in messages if isinstance(m, Notification)]

    stop = await take(subs["stop"], 2)
    assert kinds(stop) == [EventKind.STOP_MATCH, EventKind.DELETED]
    first = stop[0]
    assert isinstance(first, Notification)
    assert first.event.reason == "the document no longer matches the query"
    assert first.event.change.body["color"] == "blue"
    assert await nothing_more(subs["stop"])
    assert kinds(await take(subs["both"], 4)) == [
        EventKind.STOP_MATCH,
        EventKind.ADDED,
        EventKind.UPDATED,
        EventKind.DELETED,
    ]
    assert kinds(await take(subs["plain"], 3)) == [
        EventKind.ADDED,
        EventKind.UPDATED,
        EventKind.DELETED,
    ]
    assert await nothing_more(subs["plain"])


async def test_close_stream_ends_subscribers_and_removes_the_filter(
    index: DocumentIndex, hub: SubscriptionHub
) -> None:
    await hub.open_stream("s", kind_query("k"))
    sub = await hub.subscribe("s")
    assert hub.active_filters == 1 and hub.subscriber_count == 1
    assert await hub.close_stream("s", "cancelled")
    assert hub.active_filters == 0 and hub.subscriber_count == 0
    (closed,) = await take(sub, 1)
    assert isinstance(closed, Closed) and closed.reason == "cancelled"
    await index.write(Write(Action.POST, "/k/1", "k", {}))
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    with pytest.raises(UnknownStream):
        await hub.subscribe("s")


async def test_observer_catches_up_from_a_sequence(
    index: DocumentIndex, hub: SubscriptionHub
) -> None:
    start = index.last_seq
    for i in range(5):
        await index.write(Write(Action.POST, f"/k/{i}", "k", {}))
    seen: list[int] = []

    class Observer:
        def on_event(self, event: object) -> None:
            assert isinstance(event, object)
            seen.append(getattr(event, "seq"))  # noqa: B009

        def describe(self, event: object) -> None:
            return None

    await hub.open_stream("s", kind_query("k"), observer=Observer(), since=start)
    await index.write(Write(Action.POST, "/k/9", "k", {}))
    changes = await index.read_changes(start)
    assert seen == [c.seq for c in changes]


async def test_resume_older_than_retention_is_refused(
    index: DocumentIndex, hub: SubscriptionHub
) -> None:
    await hub.open_stream("s", kind_query("k"))
    for i in range(4):
        await index.write(Write(Action.POST, f"/k/{i}", "k", {}))
    await ChangeLogRetention(index.db, retention=1).trim_once(now=now_micros() + 10_000_000)
    with pytest.raises(ResumeTooOld) as caught:
        await hub.subscribe("s", since=1)
    assert "older than the change log keeps" in str(caught.value)
    # resuming from the kept entry still works
    sub = await hub.subscribe("s", since=index.last_seq - 1)
    (note,) = await take(sub, 1)
    assert isinstance(note, Notification) and note.event.change.self_link == "/k/3"


# --- every message is a cursor: cut anywhere, resume, same result (issue 15) -------------

#: Write operations of a run: (document number, what): PUT matching, PUT not matching, DELETE.
OPS = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["yes", "no", "delete"])), max_size=10)
_RUNS = itertools.count(1)


def cursor_of(message: Message) -> int | None:
    """The resume cursor a client is given with a message (SSE id / WebSocket seq)."""
    if isinstance(message, Initial):
        return message.cursor
    return message.seq


def apply_messages(state: dict[str, Any], messages: Sequence[Message]) -> None:
    """What a client holds: link -> body; added/updated set it, deleted/stopMatch drop it."""
    for message in messages:
        if isinstance(message, Initial):
            for body in message.payload:
                state[body["documentSelfLink"]] = body
        elif isinstance(message, Notification):
            link = message.event.change.self_link
            if message.event.kind in (EventKind.ADDED, EventKind.UPDATED):
                state[link] = message.event.change.body
            else:
                state.pop(link, None)


async def run_ops(index: DocumentIndex, kind: str, ops: Sequence[tuple[int, str]]) -> None:
    """Apply a run's writes one by one (a DELETE of a missing document is skipped)."""
    for number, what in ops:
        link = f"/{kind}/{number}"
        if what == "delete":
            if await index.get(link) is not None:
                await index.write(Write(Action.DELETE, link))
        else:
            await index.write(Write(Action.PUT, link, kind, {"m": what, "n": number}))


async def resumed_after(
    hub: SubscriptionHub, query: Query, mode: StreamMode, cursor: int
) -> list[Message]:
    """A new subscription resumed after `cursor`, up to and including its `current`."""
    sub = await hub.subscribe_query(query, since=cursor, mode=mode, markers=True)
    out: list[Message] = []
    try:
        async with asyncio.timeout(20):
            while not out or not isinstance(out[-1], Current):
                out.append(await anext(sub))
        out.extend(sub.ready())
    finally:
        await sub.aclose()
    return out


async def check_every_cut(
    index: DocumentIndex,
    hub: SubscriptionHub,
    before: Sequence[tuple[int, str]],
    after: Sequence[tuple[int, str]],
    leaves: bool,
) -> None:
    kind = f"run{next(_RUNS)}"
    query = kind_query(kind, m="yes")
    mode = StreamMode(notify_match=True, notify_leave=leaves)
    await run_ops(index, kind, before)
    # the uncut stream: snapshot one document per message, the marker, then live changes
    sub = await hub.subscribe_query(
        query, mode=mode, markers=True, loader=documents_loader(query, index.db.dialect, 1)
    )
    await run_ops(index, kind, after)
    uncut = sub.ready(100_000)
    await sub.aclose()
    marker = next(i for i, m in enumerate(uncut) if isinstance(m, Current))
    snapshot_seqs = [s for m in uncut[:marker] if isinstance(m, Initial) for s in m.seqs or ()]
    live_seqs = [m.seq for m in uncut[marker + 1 :]]
    # the snapshot in sequence order, then the marker, then later changes in order
    assert snapshot_seqs == sorted(set(snapshot_seqs))
    assert live_seqs == sorted(set(live_seqs))
    assert all(s <= uncut[marker].seq < q for s in snapshot_seqs for q in live_seqs)
    final: dict[str, Any] = {}
    apply_messages(final, uncut)
    truth = {}
    for number in range(4):
        doc = await index.get(f"/{kind}/{number}")
        if doc is not None and doc.body["m"] == "yes":
            truth[doc.self_link] = doc.body
    if leaves:
        assert final == truth
    else:  # a stream that does not report leaving holds the result set, maybe more
        assert {k: final[k] for k in truth} == truth
    for cut, message in enumerate(uncut):
        cursor = cursor_of(message)
        assert cursor is not None, message  # every message is a cursor
        resumed = await resumed_after(hub, query, mode, cursor)
        notes = [m for m in resumed if isinstance(m, Notification)]
        # nothing at or before the cursor, in increasing order, then caught up
        assert [n.seq for n in notes] == sorted({n.seq for n in notes})
        assert all(n.seq > cursor for n in notes)
        assert isinstance(resumed[-1], Current) and resumed[-1].seq >= max(
            [cursor, *(n.seq for n in notes)]
        )
        held: dict[str, Any] = {}
        apply_messages(held, uncut[: cut + 1])
        apply_messages(held, resumed)
        if leaves:
            assert held == final, (cut, cursor)
        else:
            assert {k: held.get(k) for k in truth} == truth, (cut, cursor)
        if cut >= marker:  # cut in the live part: exactly the uncut stream's messages
            rest = [m for m in uncut[cut + 1 :] if isinstance(m, Notification)]
            assert [(n.seq, n.event.kind) for n in notes] == [(n.seq, n.event.kind) for n in rest]


def test_a_stream_cut_anywhere_and_resumed_from_its_last_cursor_equals_the_uncut_stream(
    database_url: str,
) -> None:
    """For random runs of writes (the same documents updated, leaving and coming back,
    deleted) before and after the snapshot: every message carries a cursor; resuming after
    it delivers nothing at or before it, in increasing order, then `current`; the client
    ends with the same documents as the uncut stream's client (for a stream that reports
    leaving; for one that does not, the same result set), and a cut after `current` gets
    exactly the uncut stream's remaining messages."""
    runner = asyncio.Runner()
    with runner:
        db = Database(async_database_url(database_url))
        runner.run(db.migrate())
        index = DocumentIndex(db)
        runner.run(index.start())
        hub = SubscriptionHub(index)
        hub.start()

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(before=OPS, after=OPS, leaves=st.booleans())
        def check(
            before: list[tuple[int, str]], after: list[tuple[int, str]], leaves: bool
        ) -> None:
            runner.run(check_every_cut(index, hub, before, after, leaves))

        try:
            check()
        finally:
            runner.run(hub.stop())
            runner.run(db.dispose())
