"""The benchmark harness's pure helpers and the runner's listing (no benchmark is run)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from bench._harness import (
    Latencies,
    Measurement,
    Report,
    format_number,
    format_ratio,
    format_table,
    percentile,
    ratio,
    summarize,
)
from hypothesis import given
from hypothesis import strategies as st

from bench import __main__ as runner

values = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=50
)


def test_percentile_interpolates_between_ranks() -> None:
    data = [4.0, 1.0, 3.0, 2.0]
    assert percentile(data, 0) == 1.0
    assert percentile(data, 100) == 4.0
    assert percentile(data, 50) == 2.5
    assert percentile(data, 25) == pytest.approx(1.75)
    assert percentile([7.0], 99) == 7.0


@given(values, st.integers(min_value=1, max_value=99))
def test_percentile_matches_statistics_inclusive_quantiles(data: list[float], p: int) -> None:
    if len(data) < 2:
        assert percentile(data, p) == data[0]
        return
    expected = statistics.quantiles(data, n=100, method="inclusive")[p - 1]
    assert percentile(data, p) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@given(values, st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotone_and_bounded(data: list[float], p: float, q: float) -> None:
    low, high = sorted((p, q))
    assert min(data) <= percentile(data, low) <= percentile(data, high) <= max(data)


def test_percentile_refuses_empty_or_out_of_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_summarize_in_seconds_and_milliseconds() -> None:
    summary = summarize([0.001 * i for i in range(1, 101)])
    assert summary.count == 100
    assert summary.mean == pytest.approx(0.0505)
    assert summary.p50 == pytest.approx(0.0505)
    assert summary.p99 == pytest.approx(0.09901)
    assert summary.max == pytest.approx(0.1)
    assert summary.as_ms()["p50_ms"] == 50.5
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_and_its_formatting() -> None:
    assert ratio(3.0, 4.0) == 0.75
    assert format_ratio(3.0, 4.0) == "0.75x (75%)"
    assert format_ratio(2.5, 1.0) == "2.50x (250%)"
    assert math.isinf(ratio(1.0, 0.0))
    assert format_ratio(1.0, 0.0) == "inf"
    assert ratio(0.0, 0.0) == 0.0


def test_format_number() -> None:
    assert format_number(12345.6) == "12,346"
    assert format_number(12.345) == "12.35"
    assert format_number(0.000123456) == "0.0001235"
    assert format_number(0) == "0"


def test_format_table_aligns_columns() -> None:
    text = format_table(["name", "value"], [["a", "1"], ["longer", "1,000"]])
    assert text.splitlines() == [
        "name    value",
        "------  -----",
        "a           1",
        "longer  1,000",
    ]


def _report() -> Report:
    report = Report(bench="demo", baseline="bare", params={"n": 3}, info={"cpus": 2})
    report.add(Measurement("bare", 1000.0, "req/s"))
    latencies = Latencies(count=2, mean=0.002, p50=0.002, p90=0.003, p99=0.004, max=0.005)
    report.add(Measurement("real", 650.0, "req/s", latencies=latencies, extra={"sql": 0}))
    return report


def test_report_table_shows_absolute_values_and_ratio_to_baseline() -> None:
    report = _report()
    assert report.ratio_of("real") == 0.65
    table = report.table()
    assert "baseline" in table.splitlines()[2]
    real = table.splitlines()[3].split()
    assert real[:3] == ["real", "650", "req/s"]
    assert "0.65x" in real and "(65%)" in real
    assert real[-2:] == ["2.00", "4.00"]
    with pytest.raises(KeyError):
        report.get("missing")


def test_report_save_appends_lines_and_refreshes_latest(tmp_path: Path) -> None:
    report = _report()
    history = report.save(tmp_path)
    report.measurements[1].value = 700.0
    report.save(tmp_path)
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert [line["measurements"][1]["ratio"] for line in lines] == [0.65, 0.7]
    assert lines[0]["measurements"][0]["ratio"] is None
    assert lines[0]["measurements"][1]["latency"]["p99_ms"] == 4.0
    assert lines[0]["measurements"][1]["sql"] == 0
    latest = json.loads((tmp_path / "demo.latest.json").read_text())
    assert latest["measurements"][1]["value"] == 700.0


def test_runner_lists_benchmarks_with_their_summaries(capsys: pytest.CaptureFixture[str]) -> None:
    found = runner.available()
    assert "checkin" in found
    assert found["checkin"].startswith("Agent check-in throughput")
    assert runner.main([]) == 0
    assert "checkin" in capsys.readouterr().out
    assert runner.main(["no-such-bench"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
