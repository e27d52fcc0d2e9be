"""TIME_SNAPSHOT over 100,000 documents: the index as of a boundary vs the plain query.

Writes N documents (kind bench:host, a team and a counter each) on SQLite (or the given
database), takes the boundary, then changes a share of them after it (PATCHes, DELETEs and
new documents), so the snapshot must rebuild those from the change log. Then times, in the
query task engine's own one-shot path (`fleetwatch.query.one_shot.run` in one snapshot,
what a direct task runs, without HTTP), the same queries plain (the baseline, in the same
run) and with TIME_SNAPSHOT at the boundary: all N links, COUNT, and one team with
EXPAND_CONTENT. Each figure is the median of `--rounds`; the snapshot's answers are checked
against the documents as they were written before the boundary. Then the start of a
continuous COUNT task (the subscription hub's `open_stream`, as a task start runs it): plain
(a count now) against TIME_SNAPSHOT + CONTINUOUS (the count as of the boundary, then every
change after it replayed through the task's counters).

Run: `python -m bench.bench_time_snapshot [--docs 100000] [--changed 0.1] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._harness import Measurement, Report, timed
from fleetwatch.config import async_database_url
from fleetwatch.index import Action, DocumentIndex, Write, now_micros
from fleetwatch.query import one_shot
from fleetwatch.query.option_rules import parse_query_task
from fleetwatch.query.pages import PageStore
from fleetwatch.query.snapshot import snapshot
from fleetwatch.query.spec import QuerySpecification
from fleetwatch.query.spec_enums import TaskStage
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.task_initial import initial_loader, set_initial
from fleetwatch.query.task_records import TaskRecord
from fleetwatch.query.time_travel import snapshot_source
from fleetwatch.storage.database import Database

KIND = "bench:host"
TEAMS = 50
BATCH = 2000


def _spec(boundary: int | None, *options: str, team: int | None = None) -> QuerySpecification:
    clauses: list[dict[str, Any]] = [
        {"term": {"propertyName": "documentKind", "matchValue": KIND}},
    ]
    if team is not None:
        clauses.append({"term": {"propertyName": "team", "matchValue": f"t{team}"}})
    spec: dict[str, Any] = {"query": {"booleanClauses": clauses}, "options": list(options)}
    if boundary is not None:
        spec["options"].append("TIME_SNAPSHOT")
        spec["timeSnapshotBoundaryMicros"] = boundary
    return parse_query_task({"querySpec": spec}).spec


async def _write_all(index: DocumentIndex, writes: list[Write]) -> None:
    for i in range(0, len(writes), BATCH):
        await index.apply(writes[i : i + BATCH])


async def _time(db: Database, spec: QuerySpecification, expand: bool) -> tuple[float, Any]:
    owner = one_shot.PageOwner("/bench", expand, False, now_micros() + 10**9, 0, None)
    with timed() as watch:
        async with snapshot(db) as (conn, _):
            ran = await one_shot.run(conn, spec, db.dialect, PageStore(), owner)
    return watch.elapsed, ran.results


async def _time_start(
    index: DocumentIndex, spec: QuerySpecification, boundary: int | None
) -> tuple[float, TaskRecord]:
    """Start a continuous COUNT task in a hub (as of `boundary` when given)."""
    hub = SubscriptionHub(index)
    hub.start()
    options = [*spec.options, "CONTINUOUS"]
    task = parse_query_task({"querySpec": spec.model_dump(by_alias=True) | {"options": options}})
    now = now_micros()
    record = TaskRecord("/bench/task", "local-query-tasks", task, TaskStage.STARTED, now, now)
    record.start_counting()
    with timed() as watch:
        if boundary is not None:
            async with snapshot(index.db) as (conn, _):
                record.as_of_seq = (await snapshot_source(conn, boundary)).as_of_seq
        await hub.open_stream(
            record.link,
            record.effective_query,
            mode=record.mode,
            observer=record,
            loader=initial_loader(record, index.db.dialect),
            as_of=record.as_of_seq,
            initialize=lambda initial: set_initial(record, initial, hub.position),
        )
    await hub.stop()
    return watch.elapsed, record


async def run(url: str, docs: int, changed: float, rounds: int) -> Report:
    db = Database(async_database_url(url))
    await db.migrate()
    index = DocumentIndex(db)
    await index.start()
    try:
        with timed() as load:
            await _write_all(
                index,
                [
                    Write(Action.POST, f"/bench/h{i}", KIND, {"team": f"t{i % TEAMS}", "n": 0})
                    for i in range(docs)
                ],
            )
        boundary = now_micros()
        n_changed = int(docs * changed)
        await asyncio.sleep(0.002)  # the changes' times are strictly after the boundary
        after = [Write(Action.PATCH, f"/bench/h{i}", KIND, {"n": 1}) for i in range(n_changed)]
        after += [Write(Action.DELETE, f"/bench/h{docs - 1 - i}", KIND) for i in range(docs // 100)]
        after += [
            Write(Action.POST, f"/bench/new{i}", KIND, {"team": "t0", "n": 2})
            for i in range(docs // 100)
        ]
        await _write_all(index, after)

        cases: list[tuple[str, QuerySpecification, QuerySpecification, bool]] = [
            ("all links", _spec(None), _spec(boundary), False),
            ("COUNT", _spec(None, "COUNT"), _spec(boundary, "COUNT"), False),
            (
                "one team, EXPAND_CONTENT",
                _spec(None, "EXPAND_CONTENT", team=1),
                _spec(boundary, "EXPAND_CONTENT", team=1),
                True,
            ),
        ]
        report = Report(
            bench="time_snapshot",
            baseline="plain: all links",
            params={
                "docs": docs,
                "changed_after_boundary": n_changed,
                "deleted_after": docs // 100,
                "created_after": docs // 100,
                "rounds": rounds,
                "dialect": db.dialect,
            },
        )
        for name, plain, snap, expand in cases:
            plain_s: list[float] = []
            snap_s: list[float] = []
            for _ in range(rounds):
                elapsed, _ = await _time(db, plain, expand)
                plain_s.append(elapsed)
                elapsed, results = await _time(db, snap, expand)
                snap_s.append(elapsed)
            _check(name, results, docs)
            unit = "s"
            report.add(Measurement(f"plain: {name}", statistics.median(plain_s), unit, False))
            report.add(
                Measurement(f"TIME_SNAPSHOT: {name}", statistics.median(snap_s), unit, False)
            )
        plain_s, snap_s = [], []
        for _ in range(rounds):
            elapsed, record = await _time_start(index, _spec(None, "COUNT"), None)
            plain_s.append(elapsed)
            assert record.results["documentCount"] == docs, record.results
            elapsed, record = await _time_start(index, _spec(boundary, "COUNT"), boundary)
            snap_s.append(elapsed)
            # as of the boundary (all), then 1 % deleted and 1 % created after it
            assert record.results["documentCount"] == docs, record.results
            assert record.counters is not None and record.counters.updated == n_changed
        report.add(
            Measurement("plain: CONTINUOUS COUNT start", statistics.median(plain_s), "s", False)
        )
        report.add(
            Measurement(
                "TIME_SNAPSHOT: CONTINUOUS COUNT start", statistics.median(snap_s), "s", False
            )
        )
        report.notes.append(
            f"load: {docs:,} documents in {load.elapsed:.1f} s; then {len(after):,} writes "
            "after the boundary"
        )
        for name in [case[0] for case in cases] + ["CONTINUOUS COUNT start"]:
            p = report.get(f"plain: {name}").value
            s = report.get(f"TIME_SNAPSHOT: {name}").value
            report.notes.append(f"{name}: snapshot {s:.3f} s vs plain {p:.3f} s ({s / p:.2f}x)")
        return report
    finally:
        await db.dispose()


def _check(name: str, results: dict[str, Any], docs: int) -> None:
    """The snapshot saw the documents as they were before the boundary."""
    if name == "COUNT":
        assert results["documentCount"] == docs, results["documentCount"]
    elif name == "all links":
        assert len(results["documentLinks"]) == docs
    else:
        bodies = results["documents"].values()
        assert bodies and all(b["n"] == 0 for b in bodies)
        assert len(results["documentLinks"]) == docs // TEAMS


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_time_snapshot", description=__doc__
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.1, help="share PATCHed after")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(list(argv))
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        report = asyncio.run(run(url, args.docs, args.changed, args.rounds))
    report.print()
    if not args.no_save:
        report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
