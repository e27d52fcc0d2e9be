"""`fleetwatch serve --workers 2` against `--workers 1` on PostgreSQL + Redis, lean hosts.

`python -m bench workers` (options: `--hosts 3000 --campaigns 3 --workers 1,2`, and any
option of `python -m bench fleet` after `--`). Starts a PostgreSQL and a Redis server in a
temp dir (tests/services.py, as `bench cluster` does), then runs `bench fleet` (the lean
hosts, `python -m fleetwatch serve`, campaigns on all hosts watched on their streams) once
per worker count, each on a fresh database, with `--database-url` and `--redis-url`: the
one-worker run is the same cluster node alone, so the comparison isolates the processes.
Server CPU and RSS are summed over the supervisor and its workers (bench_fleet.process_tree).

The baseline is the one-worker run; it reports per run the p50/p95 from campaign creation
to each result streamed and to each write's reply, POST /queries/run latency while the fleet
long-polls, server CPU per host round trip and RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

from tests.services import PostgresServer, RedisServer

from bench import bench_fleet
from bench._harness import Measurement, Report, format_table
from bench._latency import spread

_databases = itertools.count()


def _run(
    postgres: PostgresServer, redis: RedisServer, workers: int, args: argparse.Namespace
) -> bench_fleet.FleetRun:
    argv = ["--hosts", str(args.hosts), "--campaigns", str(args.campaigns), *args.fleet]
    fleet_args = bench_fleet._parse(argv)
    fleet_args.database_url = postgres.create_database(
        f"bench_workers_{workers}_{next(_databases)}_{time.monotonic_ns()}"
    )
    fleet_args.redis_url = redis.url
    fleet_args.workers = workers
    print(f"== {workers} worker(s) ==", flush=True)
    return asyncio.run(bench_fleet.measure(fleet_args))


def _row(workers: int, run: bench_fleet.FleetRun) -> list[str]:
    streamed, written = spread(run.streamed()), spread(run.written())
    post = run.probes.get("POST /queries/run (1 host), campaigns", [])
    post_p95 = f"{spread(post).p95 * 1e3:.0f}" if post else ""
    rss = run.memory.get("server after campaigns", {}).get("VmRSS", 0) / 1024
    return [
        str(workers),
        f"{streamed.p50:.3f}",
        f"{streamed.p95:.3f}",
        f"{written.p95:.3f}",
        post_p95,
        f"{run.server_ms_per_host():.3f}",
        f"{rss:.0f}",
        str(run.missing()),
    ]


def main(argv: list[str]) -> int:
    """Run once per worker count and print them side by side."""
    parser = argparse.ArgumentParser(
        prog="python -m bench workers", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--hosts", type=int, default=3000, help="lean hosts")
    parser.add_argument("--campaigns", type=int, default=3, help="campaigns per run")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("fleet", nargs="*", help="options for bench fleet (after --)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    runs: dict[int, bench_fleet.FleetRun] = {}
    postgres = PostgresServer.start()
    try:
        redis = RedisServer.start()
        try:
            for workers in counts:
                runs[workers] = _run(postgres, redis, workers, args)
        finally:
            redis.stop()
    finally:
        postgres.stop()

    base = counts[0]
    rep = Report(
        bench="workers",
        baseline=f"{base} worker(s), streamed p95",
        params={"hosts": args.hosts, "campaigns": args.campaigns, "workers": args.workers},
    )
    extra: dict[str, Any] = {}
    for workers, run in runs.items():
        rep.add(
            Measurement(
                f"{workers} worker(s), streamed p95", spread(run.streamed()).p95, "s", False
            )
        )
        extra[str(workers)] = bench_fleet.report(run).to_json()
    rep.get(rep.baseline).extra["runs"] = extra
    rep.print()
    header = [
        "workers",
        "streamed p50 s",
        "streamed p95 s",
        "write p95 s",
        "POST p95 ms",
        "server ms CPU/host",
        "RSS MiB",
        "missing",
    ]
    print(format_table(header, [_row(w, r) for w, r in runs.items()]))
    print(f"results appended to {rep.save()}")
    return 1 if any(r.missing() for r in runs.values()) else 0
