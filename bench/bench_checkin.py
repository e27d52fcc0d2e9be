"""Agent check-in throughput: distributed/read with nothing pending vs a bare JSON endpoint.

The real server (`create_app` under `uvicorn_config`, as `fleetwatch serve` runs it, SQLite in
a temp dir, `--distributed-hold 0` so reads are answered at once) runs in its own process.
N hosts enroll and answer their detail queries, so later reads have nothing pending. Then a
load generator in another process (raw HTTP/1.1 over asyncio, one callback per response, so it
costs far less CPU per request than the server) keeps C keep-alive connections busy, in
alternating rounds, against:

- `bare`: `POST /bench/bare`, a route added to this benchmark's app only, that returns a
  constant JSON body without reading the request (the same FastAPI/uvicorn stack);
- `checkin`: `POST /api/v1/osquery/distributed/read`, spread over every enrolled node key.

It prints requests/s and latencies of both and the ratio (target: check-in >= 60 % of bare),
the CPU the server and the client used (the server must be the one at 100 %), and how many
SQL statements the server ran during the check-in rounds (counted by an engine event
listener inside the server process: only the batched seen_time flushes should appear).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench._checkin_server import (
    BARE_BODY,
    BARE_PATH,
    READ_PATH,
    enroll_all,
    served,
)
from bench._harness import Measurement, Report, format_number, ratio, summarize
from bench._http_load import LoadClients, PhaseResult, Phases, post_requests, split
from bench._processes import free_port

TARGET_RATIO = 0.60
#: What an empty distributed/read answer contains (distributed/read with nothing pending).
EMPTY_READ = b'"queries":{}'


# --- setup: enroll hosts and answer their detail queries ---------------------------------


def _sql_counts(url: str) -> dict[str, Any]:
    counts: dict[str, Any] = httpx.get(f"{url}/bench/sql", timeout=10).json()
    return counts


# --- the benchmark ----------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench checkin", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--hosts", type=int, default=1000, help="enrolled hosts (node keys)")
    parser.add_argument("--connections", type=int, default=128, help="keep-alive connections")
    parser.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="bare/check-in round pairs")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default SQLite)")
    parser.add_argument("--log-level", default="warning", help="server log level")
    args = parser.parse_args(argv)
    if args.connections < args.client_procs:
        parser.error("--connections must be at least --client-procs")
    return args


def main(argv: list[str]) -> int:
    """Run the benchmark; returns 1 when a request failed or an answer was not empty."""
    args = _parse(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-") as tmp:
        clients: LoadClients | None = None
        with served(port, tmp, args.database_url, args.log_level) as server:
            try:
                print(f"enrolling {args.hosts} hosts and answering their detail queries ...")
                started = time.perf_counter()
                keys = asyncio.run(enroll_all(url, args.hosts))
                print(f"  done in {time.perf_counter() - started:.1f} s")
                assert server.pid is not None
                bodies = [orjson.dumps({"node_key": key}) for key in keys]
                conns, procs = args.connections, args.client_procs
                phases: Phases = {
                    "checkin": (
                        split(post_requests(READ_PATH, port, bodies), conns, procs),
                        EMPTY_READ,
                    ),
                    "bare": (
                        split(post_requests(BARE_PATH, port, bodies), conns, procs),
                        orjson.dumps(BARE_BODY),
                    ),
                }
                clients = LoadClients.start(port, phases, procs)
                report = _measure(args, url, server.pid, clients)
            finally:
                if clients is not None:
                    clients.close()
    report.print()
    path = report.save()
    print(f"results appended to {path}")
    failed = report.params.get("failed_requests", 0)
    return 1 if failed else 0


@dataclass
class _Totals:
    completed: int = 0
    window: float = 0.0
    errors: int = 0
    unexpected: int = 0
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    per_round: list[float] = field(default_factory=list)
    first_error: str = ""

    def add(self, results: list[PhaseResult]) -> float:
        window = max(r.window for r in results)
        completed = sum(r.completed for r in results)
        self.completed += completed
        self.window += window
        self.errors += sum(r.errors for r in results)
        self.unexpected += sum(r.unexpected for r in results)
        for r in results:
            self.latencies.extend(r.latencies)
            self.first_error = self.first_error or r.first_error
        self.client_cpu += sum(r.client_cpu for r in results)
        self.server_cpu += results[0].server_cpu or 0.0
        rate = completed / window
        self.per_round.append(rate)
        return rate

    @property
    def rate(self) -> float:
        return self.completed / self.window


def _wait_until_quiet(url: str, timeout: float = 120.0) -> None:
    """Wait until the server's background SQL (status changes to the index) has drained.

    Periodic sweeps run a few statements a second; a backlog of host documents runs many.
    """
    deadline = time.monotonic() + timeout
    last = _sql_counts(url)["total"]
    quiet = 0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _sql_counts(url)["total"]
        quiet = quiet + 1 if now - last < 10 else 0
        if quiet == 3:
            return
        last = now
    print("warning: the server's background SQL did not quiet down; measuring anyway")


def _measure(
    args: argparse.Namespace,
    url: str,
    server_pid: int,
    clients: LoadClients,
) -> Report:
    # Every host checks in once, unmeasured, and the flusher writes their status changes
    # (hosts enrolled early may have gone offline during a long enrollment), so the measured
    # rounds see the steady state: everyone online, nothing pending.
    clients.run("checkin", args.warmup, max(args.duration, 3.0), server_pid)
    _wait_until_quiet(url)
    bare, checkin = _Totals(), _Totals()
    checkin_sql: Counter[str] = Counter()
    bare_sql: Counter[str] = Counter()
    for round_no in range(1, args.rounds + 1):
        before = _sql_counts(url)["by_kind"]
        bare_rate = bare.add(clients.run("bare", args.warmup, args.duration, server_pid))
        middle = _sql_counts(url)["by_kind"]
        read_rate = checkin.add(clients.run("checkin", args.warmup, args.duration, server_pid))
        after = _sql_counts(url)["by_kind"]
        bare_sql.update(Counter(middle) - Counter(before))
        checkin_sql.update(Counter(after) - Counter(middle))
        print(
            f"round {round_no}: bare {format_number(bare_rate)} req/s, "
            f"check-in {format_number(read_rate)} req/s ({ratio(read_rate, bare_rate):.0%})"
        )

    report = Report(
        bench="checkin",
        baseline="bare",
        params={
            "hosts": args.hosts,
            "connections": args.connections,
            "client_procs": args.client_procs,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "backend": "postgresql" if args.database_url else "sqlite",
            "failed_requests": bare.errors + checkin.errors + bare.unexpected + checkin.unexpected,
        },
    )
    for name, label, totals in (
        ("bare", BARE_PATH + " (constant JSON)", bare),
        ("checkin", READ_PATH + " (nothing pending)", checkin),
    ):
        report.add(
            Measurement(
                name=name,
                value=totals.rate,
                unit="req/s",
                latencies=summarize(totals.latencies),
                extra={
                    "path": label,
                    "requests": totals.completed,
                    "per_round": [round(r, 1) for r in totals.per_round],
                    "server_cpu_busy": round(totals.server_cpu / totals.window, 3),
                    "client_cpu_busy": round(totals.client_cpu / totals.window, 3),
                    "server_cpu_us_per_request": round(
                        totals.server_cpu / max(totals.completed, 1) * 1e6, 1
                    ),
                },
            )
        )
    share = report.ratio_of("checkin")
    verdict = "meets" if share >= TARGET_RATIO else "is BELOW"
    per_round = [ratio(c, b) for c, b in zip(checkin.per_round, bare.per_round, strict=True)]
    report.notes.append(
        f"check-in reaches {share:.0%} of bare: {verdict} the {TARGET_RATIO:.0%} target "
        f"(per round: {', '.join(f'{r:.0%}' for r in per_round)}; "
        f"median {statistics.median(per_round):.0%})"
    )
    report.get("checkin").extra["ratio_per_round"] = [round(r, 3) for r in per_round]
    cpu_share = ratio(
        bare.server_cpu / max(bare.completed, 1), checkin.server_cpu / max(checkin.completed, 1)
    )
    report.notes.append(
        f"by server CPU time per request (steadier on a shared machine): check-in reaches "
        f"{cpu_share:.0%} of bare"
    )
    report.get("checkin").extra["ratio_by_server_cpu"] = round(cpu_share, 3)
    for name, totals in (("bare", bare), ("checkin", checkin)):
        report.notes.append(
            f"{name}: server CPU {totals.server_cpu / totals.window:.0%} of a core "
            f"({totals.server_cpu / max(totals.completed, 1) * 1e6:.0f} us/request), "
            f"load generator CPU {totals.client_cpu / totals.window:.0%} "
            f"over {args.client_procs} process(es)"
        )
    in_requests = sum(n for k, n in checkin_sql.items() if k.startswith("request:"))
    background = Counter({k: n for k, n in checkin_sql.items() if not k.startswith("request:")})
    kinds = ", ".join(f"{n}x {k!r}" for k, n in background.most_common())
    report.notes.append(
        f"SQL statements run by check-in requests: {in_requests} for {checkin.completed:,} "
        f"check-ins; by background tasks during check-in rounds: {sum(background.values())} "
        f"({kinds or 'none'}); during bare rounds: {sum(bare_sql.values())}"
    )
    report.get("checkin").extra["sql_statements_in_requests"] = in_requests
    report.get("checkin").extra["sql_by_kind"] = dict(checkin_sql)
    report.get("bare").extra["sql_by_kind"] = dict(bare_sql)
    for name, totals in (("bare", bare), ("checkin", checkin)):
        if totals.errors or totals.unexpected:
            report.notes.append(
                f"{name}: {totals.errors} failed and {totals.unexpected} unexpected answers; "
                f"first: {totals.first_error}"
            )
    return report
