"""bench notify_latency: a small run end to end (the server in its own process, SQLite; every
notification matched to its write by document link)."""

from __future__ import annotations

import pytest
from bench.bench_notify_latency import main


def test_a_small_run_times_both_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.05", "--no-save"]) == 0
    out = capsys.readouterr().out
    for name in (
        "write round-trip (no subscriber)",
        "write round-trip (1 task, 1 WS subscriber)",
        "notify (write -> WebSocket)",
    ):
        assert name in out
