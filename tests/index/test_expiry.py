"""Document expiry: expired documents become DELETE changes; others stay, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fleetwatch.index import Action, Change, DocumentIndex, Write, now_micros
from fleetwatch.index.expiry import ExpirySweeper, is_expiry

FAR_FUTURE = 2**63 - 1


async def test_sweep_deletes_only_expired_documents(index: DocumentIndex) -> None:
    now = now_micros()
    await index.write(Write(Action.POST, "/d/old", "k", {"a": 1}, expiration_micros=now - 1))
    await index.write(Write(Action.POST, "/d/never", "k", {"a": 2}, expiration_micros=FAR_FUTURE))
    await index.write(Write(Action.POST, "/d/plain", "k", {"a": 3}))
    await index.write(Write(Action.POST, "/d/later", "k", {"a": 4}, expiration_micros=now + 10**9))
    seen: list[Change] = []

    def listener(batch: Sequence[Change]) -> None:
        seen.extend(batch)

    index.add_listener(listener)
    sweeper = ExpirySweeper(index)
    assert await sweeper.sweep_once() == 1
    assert [(c.self_link, c.action) for c in seen] == [("/d/old", Action.DELETE)]
    # the DELETE carries the last state, as Xenon reports an expiry
    assert seen[0].body["a"] == 1 and seen[0].body["documentUpdateAction"] == "DELETE"
    assert await index.get("/d/old") is None
    for link in ("/d/never", "/d/plain", "/d/later"):
        assert await index.get(link) is not None
    # a second sweep finds nothing; "later" goes once its time has come
    assert await sweeper.sweep_once() == 0
    assert await sweeper.sweep_once(now=now + 10**9) == 1
    assert await index.get("/d/later") is None
    assert await index.get("/d/never") is not None


async def test_extending_the_expiry_keeps_the_document(index: DocumentIndex) -> None:
    now = now_micros()
    await index.write(Write(Action.POST, "/d/1", "k", {"a": 1}, expiration_micros=now + 5_000))
    await index.write(
        Write(Action.PATCH, "/d/1", body={"documentExpirationTimeMicros": FAR_FUTURE})
    )
    assert await ExpirySweeper(index).sweep_once(now=now + 10_000) == 0
    assert await index.get("/d/1") is not None


async def test_many_expired_documents_are_swept_in_batches(index: DocumentIndex) -> None:
    past = now_micros() - 1
    await index.apply(
        [Write(Action.POST, f"/d/{i}", "k", {"i": i}, expiration_micros=past) for i in range(1203)]
    )
    assert await ExpirySweeper(index).sweep_once() == 1203
    changes = await index.read_changes(0, limit=5000)
    assert sum(1 for c in changes if c.action is Action.DELETE) == 1203


async def test_patch_to_the_past_wakes_the_background_sweeper(index: DocumentIndex) -> None:
    await index.write(Write(Action.POST, "/d/1", "k", {"a": 1}))
    sweeper = ExpirySweeper(index, interval=3600)  # only the wake-up can make it run
    sweeper.start()
    try:
        await asyncio.sleep(0.05)  # let the first (empty) sweep pass
        await index.write(Write(Action.PATCH, "/d/1", body={"documentExpirationTimeMicros": 1}))
        for _ in range(200):
            if await index.get("/d/1") is None:
                break
            await asyncio.sleep(0.05)
        assert await index.get("/d/1") is None
        assert sweeper.expired_count == 1
    finally:
        await sweeper.stop()


async def test_an_expiry_is_told_apart_from_a_delete(index: DocumentIndex) -> None:
    now = now_micros()
    await index.write(Write(Action.POST, "/d/old", "k", {"a": 1}, expiration_micros=now - 1))
    await index.write(Write(Action.POST, "/d/later", "k", {"a": 2}, expiration_micros=FAR_FUTURE))
    await index.write(Write(Action.POST, "/d/plain", "k", {"a": 3}))
    assert await ExpirySweeper(index).sweep_once() == 1
    await index.write(Write(Action.DELETE, "/d/later"))
    await index.write(Write(Action.DELETE, "/d/plain"))
    changes = await index.read_changes(0)  # read back from the log, as a resume does
    deletes = {c.self_link: is_expiry(c) for c in changes if c.action is Action.DELETE}
    assert deletes == {"/d/old": True, "/d/later": False, "/d/plain": False}
    assert not any(is_expiry(c) for c in changes if c.action is not Action.DELETE)
