"""Accepting a distributed/read reply: one bad entry voids it; accelerate only as an int."""

from __future__ import annotations

import orjson
import pytest

from fleetwatch.sim.distributed import Answer, Answers, WorkRejected, accept_work


def test_queries_discovery_and_accelerate() -> None:
    work = accept_work(
        {"queries": {"a": "SELECT 1"}, "discovery": {"a": "SELECT 1"}, "accelerate": 60}
    )
    assert work.queries == {"a": "SELECT 1"} and work.discovery == {"a": "SELECT 1"}
    assert work.accelerate == 60


@pytest.mark.parametrize("accelerate", ["60", True, 1.5, None])
def test_non_integer_accelerate_is_ignored(accelerate: object) -> None:
    assert accept_work({"accelerate": accelerate}).accelerate is None


def test_nothing_to_do() -> None:
    assert accept_work({}).queries == {}
    assert accept_work({"queries": None}).queries == {}


@pytest.mark.parametrize(
    "doc",
    [
        {"queries": ["SELECT 1"]},
        {"queries": {"a": "SELECT 1", "b": 5}},
        {"queries": {"a": ""}},
        {"queries": {"": "SELECT 1"}},
        {"queries": {"a": "SELECT 1"}, "discovery": {"a": None}},
        {"queries": {"a": "SELECT 1"}, "discovery": "SELECT 1"},
    ],
)
def test_one_bad_entry_rejects_everything(doc: dict[str, object]) -> None:
    with pytest.raises(WorkRejected):
        accept_work(doc)


def test_write_body_has_the_four_maps() -> None:
    answers = Answers()
    answers.add("ok", Answer([{"v": "1"}], 0, "", {"wall_time_ms": 1}))
    answers.add("bad", Answer([], 1, "no such table: foo", {}))
    assert orjson.loads(answers.body("k")) == {
        "node_key": "k",
        "queries": {"ok": [{"v": "1"}], "bad": []},
        "statuses": {"ok": 0, "bad": 1},
        "messages": {"ok": "", "bad": "no such table: foo"},
        "stats": {"ok": {"wall_time_ms": 1}, "bad": {}},
    }
    assert set(answers.clear()) == {"ok", "bad"} and not answers
