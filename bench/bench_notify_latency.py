"""Continuous query notification latency: index write to WebSocket delivery, at 2,000 writes/s.

The real server (`bench._notify`: the app and uvicorn configuration of `fleetwatch serve`,
SQLite in a temp dir) runs in its own process, with one bench-only route that paces index
writes (new documents) at a given rate on the server's loop, in `DocumentIndex.apply` calls
of `--batch` documents (as an ingest path would; concurrent calls are group-committed), and
answers with each write's round-trip time and the wall-clock time the schedule issued it
(not when the loop got round to it), so a loop that falls behind shows up as latency
instead of hiding it.

Two rounds, in this order:

- `write round-trip (no subscriber)`: the baseline. No task exists; the figure is the time
  from issuing a write to its commit returning, at the same rate.
- `notify (write -> WebSocket)`: a CONTINUOUS+EXPAND_CONTENT task on the written kind, one
  WebSocket subscriber in this (separate) process. For each notification the latency is the
  receive time minus the write's issue time (same machine clock), matched by document link.

It prints p50/p95/p99 of both, the write rate achieved, and the ratio of the notification
p99 to the baseline write p99. Target: notification p99 under 50 ms at 2,000 writes/s.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from bench._harness import Report, percentile, summarize
from bench._notify import latency_measurement, notify_round, running_server

if TYPE_CHECKING:
    from fleetwatch.index import Write

TARGET_P99_MS = 50.0
KIND = "docs:bench"
TASK = {
    "taskInfo": {"isDirect": False},
    "documentExpirationTimeMicros": 2**63 - 1,
    "querySpec": {
        "query": {"term": {"propertyName": "documentKind", "matchValue": KIND}},
        "options": ["CONTINUOUS", "EXPAND_CONTENT"],
    },
}


def build(spec: dict[str, Any], i: int) -> Write:
    """Write `i` of a run: a new document `<prefix><i>`."""
    from fleetwatch.index import Action, Write

    return Write(Action.POST, f"/docs/bench/{spec['prefix']}{i}", KIND, {"i": i})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each round")
    parser.add_argument(
        "--batch", type=int, default=10, help="writes per index call (an agent's log batch)"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--no-gc-tuning",
        action="store_true",
        help="leave the collector as CPython sets it (fleetwatch serve tunes it at start)",
    )
    args = parser.parse_args(argv)
    count = int(args.rate * args.seconds)
    with running_server(build, gc_tuning=not args.no_gc_tuning) as server:
        baseline = server.paced(
            {"count": count, "rate": args.rate, "prefix": "b", "batch": args.batch}
        )
        spec = {"count": count, "rate": args.rate, "prefix": "n", "batch": args.batch}
        notified = asyncio.run(notify_round(server, TASK, spec))
    notify, writes = notified.latencies, notified.writes

    report = Report(
        bench="notify_latency",
        baseline="write round-trip (no subscriber)",
        params={
            "rate": args.rate,
            "batch": args.batch,
            "seconds": args.seconds,
            "gc_tuning": not args.no_gc_tuning,
            "writes": count,
            "db": "sqlite",
        },
    )
    base = summarize(baseline["latencies"])
    note = summarize(notify)
    report.add(
        latency_measurement(
            "write round-trip (no subscriber)", baseline["latencies"], baseline["total_seconds"]
        )
    )
    report.add(
        latency_measurement("write round-trip (1 task, 1 WS subscriber)", writes["latencies"])
    )
    report.add(latency_measurement("notify (write -> WebSocket)", notify, writes["total_seconds"]))
    rate_base = count / baseline["total_seconds"]
    rate_notify = count / writes["total_seconds"]
    report.notes.append(
        f"write rate achieved: {rate_base:,.0f}/s (baseline round), {rate_notify:,.0f}/s "
        f"(notify round), target {args.rate:,.0f}/s"
    )
    report.notes.append(
        f"notify p50/p95/p99: {note.p50 * 1e3:.2f} / {percentile(notify, 95) * 1e3:.2f} / "
        f"{note.p99 * 1e3:.2f} ms (target p99 < {TARGET_P99_MS:.0f} ms: "
        f"{'met' if note.p99 * 1e3 < TARGET_P99_MS else 'NOT met'})"
    )
    report.notes.append(
        f"write round-trip p50/p95/p99 without subscriber: {base.p50 * 1e3:.2f} / "
        f"{percentile(baseline['latencies'], 95) * 1e3:.2f} / {base.p99 * 1e3:.2f} ms"
    )
    report.print()
    if not args.no_save:
        report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
