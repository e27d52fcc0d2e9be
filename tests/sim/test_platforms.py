"""Platform weighting: parsing `--platforms` and spreading hosts over platforms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.sim.platforms import (
    DEFAULT_WEIGHTS,
    PLATFORMS,
    PlatformSpecError,
    assign_platforms,
    parse_platforms,
)


def test_parse_weights_and_bare_names() -> None:
    assert parse_platforms("darwin=3, windows=2,ubuntu") == {"darwin": 3, "windows": 2, "ubuntu": 1}
    assert parse_platforms(None) == DEFAULT_WEIGHTS
    assert parse_platforms("  ") == DEFAULT_WEIGHTS


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("beos=1", "unknown platform 'beos'"),
        ("ubuntu=x", "whole number"),
        ("ubuntu=-1", "must not be negative"),
        ("ubuntu=0", "at least one platform"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(PlatformSpecError, match=message):
        parse_platforms(spec)


@given(
    st.dictionaries(st.sampled_from(sorted(PLATFORMS)), st.integers(0, 20), min_size=1),
    st.integers(0, 500),
)
def test_assignment_is_proportional_and_complete(weights: dict[str, int], count: int) -> None:
    order = assign_platforms(weights, count)
    total = sum(weights.values())
    if total == 0:
        assert order == []
        return
    assert len(order) == count
    for name, weight in weights.items():
        assert abs(order.count(name) - count * weight / total) < 1


def test_any_prefix_is_mixed() -> None:
    order = assign_platforms({"ubuntu": 1, "windows": 1}, 10)
    assert set(order[:2]) == {"ubuntu", "windows"}


def test_platform_masks_match_osquery() -> None:
    assert PLATFORMS["ubuntu"].platform_type == "9"
    assert PLATFORMS["windows"].platform_type == "2"
    assert PLATFORMS["darwin"].platform_type == "21"
    assert "posix" in PLATFORMS["centos"].osquery_platforms
    assert "posix" not in PLATFORMS["windows"].osquery_platforms
