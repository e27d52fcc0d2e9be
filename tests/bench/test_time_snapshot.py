"""bench time_snapshot: a small run end to end on SQLite (its answers are checked inside)."""

from __future__ import annotations

from pathlib import Path

from bench.bench_time_snapshot import run


async def test_a_small_run_measures_both_paths_and_checks_the_snapshot(tmp_path: Path) -> None:
    report = await run(f"sqlite:///{tmp_path / 'b.db'}", docs=500, changed=0.1, rounds=1)
    names = [m.name for m in report.measurements]
    assert names == [
        "plain: all links",
        "TIME_SNAPSHOT: all links",
        "plain: COUNT",
        "TIME_SNAPSHOT: COUNT",
        "plain: one team, EXPAND_CONTENT",
        "TIME_SNAPSHOT: one team, EXPAND_CONTENT",
        "plain: CONTINUOUS COUNT start",
        "TIME_SNAPSHOT: CONTINUOUS COUNT start",
    ]
    assert report.params["changed_after_boundary"] == 50
