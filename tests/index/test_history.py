"""The index as of a past sequence, and every retained version (`fleetwatch.index.history`),
on SQLite and PostgreSQL: checked against the states captured as the writes happened,
including after the change log was trimmed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from fleetwatch.config import async_database_url
from fleetwatch.index import Action, DocumentIndex, Write, now_micros
from fleetwatch.index.errors import DocumentIndexError
from fleetwatch.index.history import (
    HistoryTrimmed,
    all_versions,
    boundary_seq,
    history_reach,
    state_at,
    unique_versions,
)
from fleetwatch.index.retention import ChangeLogRetention
from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import documents

WRITES = st.lists(
    st.tuples(
        st.sampled_from([Action.POST, Action.PUT, Action.PATCH, Action.DELETE]),
        st.sampled_from("abc"),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=12,
)


async def _current(index: DocumentIndex, prefix: str) -> dict[str, Any]:
    async with index.db.connect() as conn:
        rows = await conn.execute(
            select(documents.c.self_link, documents.c.body).where(
                documents.c.deleted.is_(False), documents.c.self_link.startswith(prefix)
            )
        )
        return {str(r[0]): r[1] for r in rows}


async def _at(index: DocumentIndex, seq: int, prefix: str) -> dict[str, Any]:
    table = state_at(seq)
    async with index.db.connect() as conn:
        rows = await conn.execute(
            select(table.c.self_link, table.c.deleted, table.c.body).where(
                table.c.self_link.startswith(prefix)
            )
        )
        return {str(r[0]): r[2] for r in rows if not r[1]}


async def _example(
    index: DocumentIndex, prefix: str, writes: list[tuple[Action, str, int]], trim_after: int
) -> None:
    captured: list[tuple[int, dict[str, Any]]] = []
    for i, (action, name, n) in enumerate(writes):
        body = {} if action is Action.DELETE else {"n": n}
        try:
            await index.write(Write(action, f"{prefix}{name}", "k", body))
        except DocumentIndexError:
            pass  # a PATCH or DELETE of a missing document: refused, nothing written
        captured.append((await index.read_last_seq(), await _current(index, prefix)))
        if i == trim_after:
            # trim everything up to here (the newest change is always kept)
            await ChangeLogRetention(index.db, retention=1e-6).trim_once(now_micros() + 1)
    async with index.db.connect() as conn:
        reach = await history_reach(conn)
    for seq, then in captured:
        if reach.first_micros is not None and seq < reach.first_seq - 1:
            continue  # before the retained history: no longer known
        assert await _at(index, seq, prefix) == then


def test_state_at_each_sequence_equals_the_state_captured_then(database_url: str) -> None:
    """Property: after any writes (and a trim anywhere among them), the state at every
    sequence the history still covers is the state read right after that sequence."""
    runner = asyncio.Runner()
    with runner:
        db = Database(async_database_url(database_url))
        runner.run(db.migrate())
        index = DocumentIndex(db)
        runner.run(index.start())

        @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(WRITES, st.integers(0, 12))
        def check(writes: list[tuple[Action, str, int]], trim_after: int) -> None:
            runner.run(_example(index, f"/h{uuid.uuid4().hex[:8]}/", writes, trim_after))

        try:
            check()
        finally:
            runner.run(db.dispose())


async def test_boundary_before_the_history_is_refused_saying_how_far_back(
    index: DocumentIndex,
) -> None:
    early = now_micros()
    await index.write(Write(Action.POST, "/h/a", "k", {"n": 1}))
    middle = now_micros()
    await index.write(Write(Action.POST, "/h/b", "k", {"n": 1}))
    async with index.db.connect() as conn:
        assert await boundary_seq(conn, early) == 0  # nothing trimmed: before everything
        assert await boundary_seq(conn, middle) == await index.read_last_seq() - 1
    await ChangeLogRetention(index.db, retention=1e-6).trim_once(now_micros() + 1)
    async with index.db.connect() as conn:
        reach = await history_reach(conn)
        assert reach.first_micros is not None
        with pytest.raises(HistoryTrimmed) as info:
            await boundary_seq(conn, early)
        assert info.value.reach_micros == reach.first_micros
        assert "goes back to" in str(info.value)
        # at or after the oldest retained change is fine
        assert await boundary_seq(conn, reach.first_micros) == reach.first_seq


async def test_all_versions_holds_logged_and_current_versions_once(index: DocumentIndex) -> None:
    await index.write(Write(Action.POST, "/h/a", "k", {"n": 1}))
    await index.write(Write(Action.PATCH, "/h/a", "k", {"n": 2}))
    await index.write(Write(Action.POST, "/h/b", "k", {"n": 1}))
    await ChangeLogRetention(index.db, retention=1e-6).trim_once(now_micros() + 1)
    await index.write(Write(Action.DELETE, "/h/b", "k", {}))
    table = all_versions()
    async with index.db.connect() as conn:
        rows = await conn.execute(
            select(table.c.self_link, table.c.version).order_by(table.c.self_link, table.c.version)
        )
        pairs = unique_versions([(str(r[0]), int(r[1])) for r in rows])
    # a@0 and a@1's change were trimmed (a@1 is the current row); b@0 was the newest
    # change, which a trim keeps; b@1 (its DELETE) is both logged and current: once
    assert pairs == [("/h/a", 1), ("/h/b", 0), ("/h/b", 1)]
