"""Hold lengths: within the hold, spread by each host's phase, steering hosts to their slot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.dispatch.holds import cycle, hold_for, phase

ids = st.integers(min_value=1, max_value=2**40)
times = st.floats(min_value=1e9, max_value=3e9, allow_nan=False)
holds = st.floats(min_value=0.05, max_value=13.9, allow_nan=False)
intervals = st.integers(min_value=1, max_value=3600)


@given(ids, times, holds, intervals)
def test_a_hold_is_never_negative_nor_longer_than_the_setting(
    host_id: int, now: float, hold: float, interval: int
) -> None:
    assert 0.0 <= hold_for(host_id, now, hold, interval) <= hold


@given(ids, times, intervals)
def test_no_hold_setting_no_hold(host_id: int, now: float, interval: int) -> None:
    assert hold_for(host_id, now, 0.0, interval) == 0.0


@given(st.integers(min_value=1, max_value=10**9), st.sampled_from([10, 100, 1000]))
def test_any_run_of_ids_spreads_evenly_over_the_cycle(start: int, n: int) -> None:
    # The golden-ratio sequence: n consecutive ids put at most 2 in any 1/n of the cycle.
    counts = [0] * n
    for host_id in range(start, start + n):
        counts[int(phase(host_id) * n)] += 1
    assert max(counts) <= 2


@given(ids, times, holds, intervals)
def test_a_host_back_after_a_cycle_is_held_the_same(
    host_id: int, now: float, hold: float, interval: int
) -> None:
    # Its slot repeats every cycle: a host whose reads come one cycle apart is settled.
    first = hold_for(host_id, now, hold, interval)
    again = hold_for(host_id, now + cycle(hold, interval), hold, interval)
    assert abs(first - again) < 1e-4 or abs(abs(first - again) - hold) < 1e-4
