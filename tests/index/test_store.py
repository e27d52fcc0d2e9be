"""The document index: versions, actions, the change log and its order, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from fleetwatch.index import (
    Action,
    Change,
    DocumentExists,
    DocumentIndex,
    DocumentNotFound,
    InvalidWrite,
    VersionConflict,
    Write,
)


async def test_post_get_and_builtin_fields(index: DocumentIndex) -> None:
    change = await index.write(Write(Action.POST, "/docs/e/1", "docs:e", {"name": "ann"}))
    assert change is not None and change.seq >= 1 and change.version == 0
    doc = await index.get("/docs/e/1")
    assert doc is not None
    assert doc.body["name"] == "ann"
    assert doc.body["documentSelfLink"] == "/docs/e/1"
    assert doc.body["documentKind"] == "docs:e"
    assert doc.body["documentVersion"] == 0
    assert doc.body["documentUpdateAction"] == "POST"
    assert doc.body["documentUpdateTimeMicros"] > 0


async def test_put_patch_delete_versions_and_prev(index: DocumentIndex) -> None:
    await index.write(Write(Action.POST, "/d/1", "k", {"a": 1, "b": 2}))
    put = await index.write(Write(Action.PUT, "/d/1", body={"a": 5}))
    assert put is not None and put.version == 1 and "b" not in put.body
    assert put.prev_body is not None and put.prev_body["b"] == 2
    patch = await index.write(Write(Action.PATCH, "/d/1", body={"c": 3, "a": None}))
    assert patch is not None and patch.body["a"] == 5 and patch.body["c"] == 3
    deleted = await index.write(Write(Action.DELETE, "/d/1"))
    assert deleted is not None and deleted.action is Action.DELETE and deleted.body["c"] == 3
    assert await index.get("/d/1") is None
    tomb = await index.get("/d/1", include_deleted=True)
    assert tomb is not None and tomb.deleted and tomb.version == 3
    # a POST after a delete recreates the document with a higher version
    again = await index.write(Write(Action.POST, "/d/1", "k", {"z": 1}))
    assert again is not None and again.version == 4 and again.prev_body is None


async def test_errors_do_not_harm_other_writes(index: DocumentIndex) -> None:
    await index.write(Write(Action.POST, "/d/1", "k", {"a": 1}))
    outcomes = await index.apply(
        [
            Write(Action.POST, "/d/1", "k", {"a": 2}),
            Write(Action.PATCH, "/d/missing", body={"a": 1}),
            Write(Action.POST, "/d/2", "k", {"a": 3}),
            Write(Action.POST, "/d/1", "k", {"a": 9}, if_absent=True),
            Write(Action.POST, "/d/3", None, {"a": 1}),
            Write(Action.PUT, "/d/1", body={"documentVersion": 7}),
            Write(Action.PUT, "/d/1", body={"a": 4}, expected_version=5),
        ]
    )
    assert isinstance(outcomes[0], DocumentExists)
    assert isinstance(outcomes[1], DocumentNotFound)
    assert isinstance(outcomes[2], Change)
    assert outcomes[3] is None
    assert isinstance(outcomes[4], InvalidWrite)
    assert isinstance(outcomes[5], InvalidWrite)
    assert isinstance(outcomes[6], VersionConflict)
    doc = await index.get("/d/1")
    assert doc is not None and doc.body["a"] == 1 and doc.version == 0
    with pytest.raises(DocumentNotFound):
        await index.write(Write(Action.DELETE, "/d/none"))


async def test_change_log_is_ordered_and_gapless_under_concurrency(index: DocumentIndex) -> None:
    seen: list[Change] = []

    def listener(batch: Sequence[Change]) -> None:
        seen.extend(batch)

    index.add_listener(listener)

    async def writer(n: int) -> None:
        for i in range(20):
            await index.write(Write(Action.PUT, f"/d/{n}-{i % 5}", "k", {"n": n, "i": i}))

    await asyncio.gather(*(writer(n) for n in range(10)))
    seqs = [c.seq for c in seen]
    assert len(seqs) == 200
    assert seqs == sorted(seqs)
    assert seqs == list(range(seqs[0], seqs[0] + 200))
    logged = await index.read_changes(0, limit=1000)
    assert [c.seq for c in logged] == seqs
    assert [(c.self_link, c.version) for c in logged] == [(c.self_link, c.version) for c in seen]
    assert index.last_seq == seqs[-1] == await index.read_last_seq()
    # versions per document increase by one with each change
    per_doc: dict[str, list[int]] = {}
    for c in logged:
        per_doc.setdefault(c.self_link, []).append(c.version)
    for versions in per_doc.values():
        assert versions == list(range(len(versions)))


async def test_read_changes_after_a_sequence(index: DocumentIndex) -> None:
    for i in range(5):
        await index.write(Write(Action.POST, f"/d/{i}", "k", {"i": i}))
    changes = await index.read_changes(0)
    tail = await index.read_changes(changes[2].seq, limit=10)
    assert [c.body["i"] for c in tail] == [3, 4]
    assert await index.first_retained_seq() == changes[0].seq


async def test_backlog_counts_queued_writes(index: DocumentIndex) -> None:
    assert index.backlog == 0
    pending = [
        asyncio.ensure_future(
            index.apply([Write(Action.PUT, f"/b/{i}-{j}", "k") for j in range(3)])
        )
        for i in range(4)
    ]
    await asyncio.sleep(0)  # the callers have queued; the writer has not committed yet
    assert index.backlog == 12
    await asyncio.gather(*pending)
    assert index.backlog == 0


async def test_each_body_is_serialized_once_per_commit(
    index: DocumentIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body goes into its document row and its change row from one serialization, and a
    previous version written earlier in the same transaction is not serialized again."""
    import fleetwatch.storage.database as database

    serialized: list[int] = []

    def counting(value: object, *args: Any, **kwargs: Any) -> bytes:
        if isinstance(value, dict) and value.get("marker") == "once":
            serialized.append(int(value["documentVersion"]))
        return orjson.dumps(value, *args, **kwargs)

    monkeypatch.setattr(database, "orjson", SimpleNamespace(dumps=counting, loads=orjson.loads))
    await index.apply(
        [
            Write(Action.POST, "/once/1", "k", {"marker": "once"}),
            Write(Action.PATCH, "/once/1", body={"n": 1}),
        ]
    )
    assert sorted(serialized) == [0, 1]  # each version once; v1's previous is v0's text
    serialized.clear()
    change = await index.write(Write(Action.PATCH, "/once/1", body={"n": 2}))
    assert sorted(serialized) == [1, 2]  # the new body, and the stored previous version
    assert change is not None and change.prev_body is not None and change.prev_body["n"] == 1
    monkeypatch.undo()
    doc = await index.get("/once/1")
    assert doc is not None and doc.body["n"] == 2 and doc.body["marker"] == "once"
    logged = await index.read_changes(0)
    bodies = [(c.version, c.body.get("n"), (c.prev_body or {}).get("n")) for c in logged]
    assert bodies[-3:] == [(0, None, None), (1, 1, None), (2, 2, 1)]
