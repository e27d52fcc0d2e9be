"""Change-log retention: old changes are trimmed, the newest is kept, sequences never restart."""

from __future__ import annotations

from fleetwatch.index import Action, DocumentIndex, Write, now_micros
from fleetwatch.index.retention import ChangeLogRetention


async def test_trim_keeps_recent_changes(index: DocumentIndex) -> None:
    for i in range(5):
        await index.write(Write(Action.POST, f"/d/{i}", "k", {"i": i}))
    retention = ChangeLogRetention(index.db, retention=3600)
    assert await retention.trim_once() == 0
    assert len(await index.read_changes(0)) == 5


async def test_trim_removes_old_changes_but_keeps_the_newest(index: DocumentIndex) -> None:
    for i in range(7):
        await index.write(Write(Action.POST, f"/d/{i}", "k", {"i": i}))
    last = await index.read_last_seq()
    retention = ChangeLogRetention(index.db, retention=1)
    removed = await retention.trim_once(now=now_micros() + 10_000_000)
    assert removed == 6
    kept = await index.read_changes(0)
    assert [c.seq for c in kept] == [last]
    assert await index.first_retained_seq() == last
    # sequences continue after the kept entry; they never restart
    change = await index.write(Write(Action.POST, "/d/new", "k", {}))
    assert change is not None and change.seq == last + 1
    # documents themselves are untouched by the trim
    assert await index.get("/d/0") is not None


async def test_trim_only_removes_changes_older_than_the_cutoff(index: DocumentIndex) -> None:
    for i in range(3):
        await index.write(Write(Action.POST, f"/d/{i}", "k", {"i": i}))
    cutoff_now = now_micros()
    for i in range(3, 6):
        await index.write(Write(Action.POST, f"/d/{i}", "k", {"i": i}))
    # retention of 0.000001 s at "cutoff_now": only the first three are older
    retention = ChangeLogRetention(index.db, retention=1e-6)
    await retention.trim_once(now=cutoff_now + 1)
    kept = await index.read_changes(0)
    assert [c.body["i"] for c in kept] == [3, 4, 5]
