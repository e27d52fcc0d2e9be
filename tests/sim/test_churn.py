"""Offline fraction, flapping and query failures: seeded, in range, validated."""

from __future__ import annotations

import pytest

from fleetwatch.sim.churn import (
    FAILURE_MESSAGES,
    Churn,
    ChurnError,
    Presence,
    query_delay,
    query_failure,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"offline_fraction": 1.5},
        {"query_fail_prob": -0.1},
        {"flap": -1},
        {"query_delay": float("inf")},
        {"offline_fraction": float("nan")},
    ],
)
def test_out_of_range_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ChurnError):
        Churn(**kwargs)


def test_offline_fraction_without_flap_is_a_fixed_set() -> None:
    churn = Churn(offline_fraction=0.3)
    presences = [Presence(f"s:{i}", churn, 0.0) for i in range(2000)]
    offline = [p for p in presences if not p.online(0.0)]
    assert 0.25 < len(offline) / 2000 < 0.35
    assert all(not p.online(1e6) for p in offline)
    assert all(p.next_change(5.0) is None for p in presences)


def test_flapping_hosts_come_back() -> None:
    churn = Churn(offline_fraction=0.5, flap=10)
    presence = Presence("s:1", churn, 100.0)
    states = []
    now = 100.0
    for _ in range(40):
        states.append(presence.online(now))
        change = presence.next_change(now)
        assert change is not None and now < change <= now + 10
        now = change
    assert True in states and False in states


def test_query_failures_match_the_probability() -> None:
    churn = Churn(query_fail_prob=0.2, query_delay=2.0)
    failures = [query_failure("s", churn, "q", n) for n in range(5000)]
    rate = sum(f is not None for f in failures) / 5000
    assert 0.17 < rate < 0.23
    assert {f for f in failures if f} <= set(FAILURE_MESSAGES)
    assert all(0 <= query_delay("s", churn, "q", n) < 2.0 for n in range(100))
    assert query_failure("s", Churn(), "q", 1) is None
    assert query_delay("s", Churn(), "q", 1) == 0.0
