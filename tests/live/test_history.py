"""The history listing's filters and its time parsing."""

from __future__ import annotations

import pytest

from fleetwatch.fleet.errors import Invalid
from fleetwatch.live.history import CampaignFilter, parse_time


def test_parse_time() -> None:
    assert parse_time(None, "since") is None and parse_time("", "since") is None
    assert parse_time("1970-01-01T00:01:00Z", "since") == 60.0
    assert parse_time("1970-01-01T00:01:00", "since") == 60.0  # no zone: UTC
    assert parse_time("1970-01-01T01:01:00+01:00", "until") == 60.0
    # the fraction matters, though its text sorts before a whole second's "Z"
    assert parse_time("1970-01-01T00:01:00.5Z", "since") == 60.5
    with pytest.raises(Invalid, match="until must be an RFC 3339 time"):
        parse_time("tomorrow", "until")


def test_times_are_inclusive() -> None:
    window = CampaignFilter(since=10.0, until=20.0)
    assert [t for t in (9.9, 10.0, 15.0, 20.0, 20.1) if window.keeps(t)] == [10.0, 15.0, 20.0]
    assert CampaignFilter().keeps(0.0)
