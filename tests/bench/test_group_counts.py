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
