"""The retry delay of outbound calls: doubling from the base, capped, for any failure count
(a destination or webhook that retries on for good counts past 1,024 failures, where
`base * 2**failures` no longer fits a float)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.outbound.backoff import retry_delay


def test_the_delay_doubles_from_the_base_up_to_the_cap() -> None:
    assert [retry_delay(0.5, n, 30.0) for n in range(1, 9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert retry_delay(0.5, 0, 30.0) == 0.0


def test_thousands_of_failures_wait_the_cap() -> None:
    for failures in (1_024, 1_025, 1_100, 10**6, 10**18):
        assert retry_delay(0.5, failures, 30.0) == 30.0


@given(
    base=st.floats(min_value=1e-6, max_value=3600.0),
    failures=st.integers(min_value=-(10**20), max_value=10**20),
    cap=st.floats(min_value=1e-6, max_value=86_400.0),
)
def test_any_failure_count_gives_a_finite_delay_within_the_cap(
    base: float, failures: int, cap: float
) -> None:
    delay = retry_delay(base, failures, cap)
    assert math.isfinite(delay) and 0.0 <= delay <= cap
    if failures >= 1:
        assert delay == min(cap, base * 2.0 ** min(failures - 1, 64))
        assert delay >= min(base, cap)


@given(base=st.floats(min_value=1e-6, max_value=3600.0), failures=st.integers(1, 10_000))
def test_the_delay_never_shrinks_as_failures_grow(base: float, failures: int) -> None:
    assert retry_delay(base, failures, 30.0) <= retry_delay(base, failures + 1, 30.0)
