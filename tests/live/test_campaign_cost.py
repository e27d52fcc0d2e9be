"""osquery's per-query stats as numbers, and a campaign's cost from them."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fleetwatch.live.campaign_cost import CampaignCost, result_stats


def test_stats_are_kept_as_numbers_whatever_osquery_sent() -> None:
    raw = {"wall_time_ms": "12", "user_time": 3, "system_time": "1.5", "memory": 4096.0}
    assert result_stats(raw) == {
        "wall_time_ms": 12,
        "user_time": 3,
        "system_time": 1.5,
        "memory": 4096,
    }
    junk = {"wall_time_ms": "fast", "user_time": True, "system_time": -1, "memory": None}
    assert result_stats(junk) == {}
    assert result_stats({"other": 1, "memory": " 7 "}) == {"memory": 7}
    assert result_stats("nope") == {} and result_stats({}) == {}


def _exact(values: Sequence[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[round(q * (len(ranked) - 1))]


def test_cost_is_p50_p95_and_max_within_one_percent() -> None:
    rng = random.Random(7)
    walls = [rng.randint(1, 5000) for _ in range(20_000)]
    memories = [rng.randint(1, 10**9) for _ in range(20_000)]
    cost = CampaignCost()
    for wall, memory in zip(walls, memories, strict=True):
        cost.add({"wall_time_ms": wall, "memory": memory})
    cost.add({})  # an answer without stats counts for neither
    body = cost.to_json()
    assert body["samples"] == 20_000
    for name, values in (("wall_time_ms", walls), ("memory", memories)):
        assert body[name]["max"] == max(values)
        for q, key in ((0.5, "p50"), (0.95, "p95")):
            exact = _exact(values, q)
            assert abs(body[name][key] - exact) <= 0.011 * exact + 1, (name, key)


def test_cost_of_nothing_and_of_equal_values() -> None:
    empty = CampaignCost().to_json()
    assert empty == {
        "samples": 0,
        "wall_time_ms": {"p50": None, "p95": None, "max": None},
        "memory": {"p50": None, "p95": None, "max": None},
    }
    same = CampaignCost()
    for _ in range(5):
        same.add({"wall_time_ms": 2, "memory": 0})
    assert same.to_json()["wall_time_ms"] == {"p50": 2, "p95": 2, "max": 2}
    assert same.to_json()["memory"] == {"p50": 0, "p95": 0, "max": 0}
