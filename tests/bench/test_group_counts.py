"""bench group_counts: a small run end to end (the server in its own process, SQLite; every
grouped notification is checked inside to carry the two groups its write moved)."""

from __future__ import annotations

import pytest
from bench.bench_group_counts import main


def test_a_small_run_times_every_round(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--docs", "300", "--groups", "7", "--seconds", "0.05", "--no-save"]) == 0
    out = capsys.readouterr().out
    for name in (
        "write round-trip (no task)",
        "notify, COUNT + CONTINUOUS",
        "notify, GROUP_BY + COUNT + CONTINUOUS",
        "group-count task start over 300 documents",
    ):
        assert name in out


def test_rounds_run_in_the_order_given_with_the_probe(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--docs", "300", "--groups", "7", "--seconds", "0.05", "--no-save"]
    assert main([*argv, "--order", "grouped,count,baseline", "--probe"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("  ")[0] for line in out.splitlines() if "ms p99" in line]
    assert rows == [
        "notify, GROUP_BY + COUNT + CONTINUOUS",
        "notify, COUNT + CONTINUOUS",
        "write round-trip (no task)",
    ]
    assert "probe, notify, GROUP_BY + COUNT + CONTINUOUS (round 1):" in out
    assert "WAL frames max" in out


def test_an_order_must_name_each_round_once() -> None:
    with pytest.raises(SystemExit):
        main(["--order", "grouped,grouped,count", "--no-save"])
