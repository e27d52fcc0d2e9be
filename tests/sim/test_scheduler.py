"""Differential results, splay and clock-aligned intervals of scheduled queries."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.sim.agent_config import ScheduledQuery
from fleetwatch.sim.scheduler import (
    QueryState,
    Schedule,
    diff_rows,
    next_run,
    row_bytes,
    splayed_interval,
)

rows = st.lists(st.sampled_from([b'{"a":"1"}', b'{"a":"2"}', b'{"a":"3"}', b'{"b":"x"}']))


@given(rows, rows)
def test_diff_turns_the_old_multiset_into_the_new(old: list[bytes], new: list[bytes]) -> None:
    diff = diff_rows(old, new)
    assert Counter(old) - Counter(diff.removed) + Counter(diff.added) == Counter(new)
    assert not Counter(diff.added) & Counter(diff.removed)


def test_first_run_is_counter_zero_then_counts_up() -> None:
    state = QueryState("SELECT 1", 10, 0.0)
    first = state.record([b"1", b"2"])
    assert state.counter == 0 and first.added == [b"1", b"2"] and first.removed == []
    second = state.record([b"2", b"3"])
    assert state.counter == 1 and second.added == [b"3"] and second.removed == [b"1"]
    assert state.record([b"2", b"3"]).empty and state.counter == 2
    assert state.record([]).removed == [b"2", b"3"]
    assert state.record([]).empty


def test_row_bytes_is_canonical() -> None:
    assert row_bytes({"b": "1", "a": "2"}) == row_bytes({"a": "2", "b": "1"})


@given(st.integers(1, 100_000), st.integers(0, 100), st.text(max_size=5))
def test_splay_stays_within_the_percentage(interval: int, percent: int, seed: str) -> None:
    value = splayed_interval(interval, percent, seed)
    assert value >= 1
    assert abs(value - interval) <= interval * percent / 100 + 1


@given(st.floats(0, 2e9), st.integers(1, 86_400))
def test_next_run_is_the_next_multiple(now: float, every: int) -> None:
    due = next_run(now, every)
    assert due > now and due % every == 0 and due - now <= every


def test_replacing_the_schedule_keeps_state_of_unchanged_queries() -> None:
    schedule = Schedule()
    keep = ScheduledQuery("keep", "SELECT 1", 10)
    schedule.replace({"keep": keep, "change": ScheduledQuery("change", "SELECT 2", 10)}, 0, "s", 0)
    schedule.states["keep"].record([b"x"])
    schedule.states["change"].record([b"y"])
    schedule.replace({"keep": keep, "change": ScheduledQuery("change", "SELECT 3", 10)}, 0, "s", 0)
    assert not schedule.states["keep"].fresh
    assert schedule.states["change"].fresh
    assert schedule.due(10.0) == ["keep", "change"] and schedule.next_due() == 20.0
