"""bench live_latency: mode parsing, percentile spread, SSE parsing, metrics counts, rates."""

from __future__ import annotations

import statistics

import pytest
from bench._latency import (
    Mode,
    SseParser,
    agent_request_counts,
    epoch,
    parse_modes,
    per_host_rate,
    spread,
)
from hypothesis import given
from hypothesis import strategies as st


def test_parse_modes_reads_hold_interval_pairs() -> None:
    modes = parse_modes("10:10, 10:1,0:10")
    assert modes == [Mode(10.0, 10), Mode(10.0, 1), Mode(0.0, 10)]
    assert [m.name for m in modes] == [
        "long-poll H=10 I=10",
        "long-poll H=10 I=1",
        "polling H=0 I=10",
    ]
    assert modes[1].cycle == 11.0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10:10", "exactly one mode with hold 0"),
        ("0:10,0:5", "exactly one mode with hold 0"),
        ("10", "is not HOLD:INTERVAL"),
        ("x:10,0:10", "numbers"),
        ("16:1,0:10", "hold must be between 0 and 14"),
        ("10:0,0:10", "interval must be between 1 and 3600"),
        ("10:1,10:1,0:10", "given twice"),
    ],
)
def test_parse_modes_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_modes(text)


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=2, max_size=200))
def test_spread_agrees_with_statistics_quantiles(values: list[float]) -> None:
    result = spread(values)
    # statistics' "inclusive" method is the same linear interpolation between closest ranks
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    assert result.count == len(values)
    assert result.p50 == pytest.approx(cuts[49], abs=1e-9)
    assert result.p95 == pytest.approx(cuts[94], abs=1e-9)
    assert result.p99 == pytest.approx(cuts[98], abs=1e-9)
    assert result.max == max(values)
    assert result.p50 <= result.p95 <= result.p99 <= result.max


def test_spread_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        spread([])


def test_sse_parser_yields_events_and_skips_comments() -> None:
    parser = SseParser()
    lines = [
        ": connected",
        "",
        "id: 7",
        "event: result",
        'data: {"type": "result"}',
        "",
        ": keep-alive",
        "",
        "event: status",
        "data: a",
        "data: b",
        "",
    ]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert events == [("result", '{"type": "result"}'), ("status", "a\nb")]


def test_agent_request_counts_sums_outcomes_per_endpoint() -> None:
    text = "\n".join(
        [
            "# HELP fleetwatch_agent_requests_total osquery agent API requests",
            "# TYPE fleetwatch_agent_requests_total counter",
            'fleetwatch_agent_requests_total{endpoint="distributed_read",outcome="ok"} 120.0',
            'fleetwatch_agent_requests_total{endpoint="distributed_read",outcome="error"} 3.0',
            'fleetwatch_agent_requests_total{endpoint="config",outcome="ok"} 5.0',
            'fleetwatch_agent_requests_created{endpoint="config",outcome="ok"} 1.7e9',
            'fleetwatch_http_request_duration_seconds_count{route="/x",method="GET"} 9.0',
        ]
    )
    assert agent_request_counts(text) == {"distributed_read": 123.0, "config": 5.0}


def test_per_host_rate() -> None:
    assert per_host_rate(100, 1100, hosts=10, seconds=20) == pytest.approx(5.0)
    assert per_host_rate(0, 10, hosts=0, seconds=1) == 0.0
    assert per_host_rate(0, 10, hosts=1, seconds=0) == 0.0


def test_epoch_reads_the_api_timestamps() -> None:
    assert epoch("1970-01-01T00:00:01.500000Z") == pytest.approx(1.5)
