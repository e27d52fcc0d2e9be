"""Live group counts: 100,000 documents, 2,000 writes/s, write to WebSocket notification.

The real server (`bench._notify`: the app and uvicorn configuration of `fleetwatch serve`,
SQLite in a temp dir, one bench-only pacing route) runs in its own process. Its writes
PATCH documents, each moving its document to another of `--groups` teams. 100,000
documents (`--docs`) are loaded first.

Rounds, each over its own documents (every write moves a count), in the order `--order`
gives (default `baseline,count,grouped`):

- `baseline`, `write round-trip (no task)`: the time from issuing a write to its commit.
- `count`, `notify, COUNT + CONTINUOUS`: a plain live count over the 100,000 documents, one
  WebSocket subscriber; every write is an update, so every notification carries the count.
- `grouped`, `notify, GROUP_BY + COUNT + CONTINUOUS`: live group counts, one WebSocket
  subscriber; each notification carries the two groups the write moved.

Notification latency is the receive time minus the write's issue time (same machine clock),
matched by document link. It also reports how long the group-count task took to start (one
GROUP BY over the 100,000 documents). `--probe` records the server's timeline in each round
(loop lag, write transactions, collections, WAL size: `bench._server_probe`) and prints
what the first seconds of a round looked like against the rest. Target: group-count
notification p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench import _server_probe
from bench._harness import Report, summarize
from bench._notify import Server, latency_measurement, notify_round, running_server
from bench._processes import profiled

if TYPE_CHECKING:
    from fleetwatch.index import Write

TARGET_P99_MS = 50.0
KIND = "docs:bench"
ROUNDS = {
    "baseline": "write round-trip (no task)",
    "count": "notify, COUNT + CONTINUOUS",
    "grouped": "notify, GROUP_BY + COUNT + CONTINUOUS",
}


def build(spec: dict[str, Any], i: int) -> Write:
    """Write `i` of a run: POST (load) or PATCH document `first + i` into its next team."""
    from fleetwatch.index import Action, Write

    action = Action(spec["action"])
    n = int(spec["first"]) + i
    # the next team along: every PATCH moves its document to another group
    team = f"team{(n + (1 if action is Action.PATCH else 0)) % int(spec['groups'])}"
    body: dict[str, Any] = {"team": team, "n": n}
    if action is Action.POST:
        body["documentSelfLink"] = f"d{n}"
    return Write(action, f"/docs/bench/d{n}", KIND, body)


def _task(grouped: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "query": {"term": {"propertyName": "documentKind", "matchValue": KIND}},
        "options": ["CONTINUOUS", "COUNT"],
    }
    if grouped:
        spec["options"].append("GROUP_BY")
        spec["groupByTerm"] = {"propertyName": "team"}
    return {
        "taskInfo": {"isDirect": False},
        "documentExpirationTimeMicros": 2**63 - 1,
        "querySpec": spec,
    }


def _two_groups(message: dict[str, Any]) -> None:
    if len(message["results"]["groupCounts"]) != 2:
        raise RuntimeError(f"a move changes two groups: {message}")


def _parse_order(text: str) -> list[str]:
    order = [name.strip() for name in text.split(",") if name.strip()]
    if sorted(order) != sorted(ROUNDS):
        raise argparse.ArgumentTypeError(f"give each of {', '.join(ROUNDS)} once")
    return order


def _run_round(
    server: Server, kind: str, spec: dict[str, Any]
) -> tuple[list[float], dict[str, Any], float]:
    if kind == "baseline":
        answer = server.paced(spec)
        return answer["latencies"], answer, 0.0
    grouped = kind == "grouped"
    done = asyncio.run(notify_round(server, _task(grouped), spec, _two_groups if grouped else None))
    return done.latencies, done.writes, done.start_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000, help="documents in the index")
    parser.add_argument("--groups", type=int, default=50, help="teams the documents are in")
    parser.add_argument("--rate", type=float, default=2000.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each round")
    parser.add_argument("--batch", type=int, default=10, help="writes per index call")
    parser.add_argument(
        "--order",
        type=_parse_order,
        default=list(ROUNDS),
        help="the rounds' order, e.g. grouped,count,baseline (default baseline,count,grouped)",
    )
    parser.add_argument("--probe", action="store_true", help="print each round's timeline")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="profile the server with py-spy (raw stacks per thread) during the group-count "
        "round into DIR/server-grouped.txt (summarize with python -m bench._spy_summary)",
    )
    parser.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per s")
    args = parser.parse_args(argv)
    count = int(args.rate * args.seconds)
    if 3 * count > args.docs:
        parser.error("each round needs its own documents: --docs >= 3 * rate * seconds")

    def writes(first: int, action: str, n: int, rate: float, batch: int) -> dict[str, Any]:
        return {
            "first": first,
            "count": n,
            "rate": rate,
            "batch": batch,
            "groups": args.groups,
            "action": action,
        }

    results: dict[str, tuple[list[float], dict[str, Any], float]] = {}
    probes: list[str] = []
    with running_server(build, probe=args.probe) as server:
        server.paced(writes(0, "POST", args.docs, 1e9, 500))
        for position, kind in enumerate(args.order):
            spec = writes(position * count, "PATCH", count, args.rate, args.batch)
            profile = None
            if args.py_spy is not None and kind == "grouped":
                Path(args.py_spy).mkdir(parents=True, exist_ok=True)
                profile = Path(args.py_spy, "server-grouped.txt")
            if args.probe:
                httpx.post(f"{server.url}/bench/probe/start").raise_for_status()
            with profiled(server.pid, profile, args.py_spy_rate):
                results[kind] = _run_round(server, kind, spec)
            if args.probe:
                timeline = httpx.post(f"{server.url}/bench/probe/stop", timeout=60).json()
                begin = min(results[kind][1]["issued"].values()) / 1e9
                probes.append(f"probe, {ROUNDS[kind]} (round {position + 1}):")
                probes += _server_probe.summarize(timeline, begin)

    report = Report(
        bench="group_counts",
        baseline=ROUNDS["baseline"],
        params={
            "docs": args.docs,
            "groups": args.groups,
            "rate": args.rate,
            "batch": args.batch,
            "seconds": args.seconds,
            "writes": count,
            "order": ",".join(args.order),
            "db": "sqlite",
        },
    )
    for kind in args.order:
        latencies, answer, _ = results[kind]
        report.add(latency_measurement(ROUNDS[kind], latencies, answer["total_seconds"]))
    p99 = summarize(results["grouped"][0]).p99 * 1e3
    report.notes.append(
        f"group-count task start over {args.docs:,} documents (one GROUP BY): "
        f"{results['grouped'][2] * 1e3:.0f} ms"
    )
    report.notes.append(
        f"group-count notify p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms: "
        f"{'met' if p99 < TARGET_P99_MS else 'NOT met'})"
    )
    report.notes += probes
    report.print()
    if not args.no_save:
        report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
