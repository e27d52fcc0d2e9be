"""Fleet-scale live queries with the lean generator: latency, server CPU and RSS per host.

`python -m bench fleet --hosts 10000` (`--quick` for a small protocol check). Processes:

- the baseline, `python -m bench._bare_server` (one uvicorn + Starlette endpoint that reads
  and parses a body, GC tuned as `fleetwatch serve` tunes it): the lean hosts' process keeps
  `--bare-connections` connections busy with the body of one live query answer for
  `--bare-seconds`; its CPU per request (from /proc, utime+stime) is the floor every
  server figure is divided by;
- the server, `python -m fleetwatch serve` (the real CLI: open-file limit and GC tuning
  included; SQLite in a temp dir unless `--database-url`), `--distributed-hold H`,
  `--distributed-interval I`;
- the lean hosts (`bench._lean_agents`, one process, one keep-alive connection per host,
  canned answers), started `--start-rate` a second and settled (every host enrolled and
  answered its detail queries, nothing but live queries offered for a while); one host is
  then deleted through the API, to see it get node_invalid and enroll again;
- this process, the user: an idle window of long-polling (server and hosts' CPU per second
  and per check-in), then `--campaigns` campaigns on all hosts, each after a random pause
  of up to H+I s, each watched on its Server-Sent Events stream; meanwhile a thread calls
  `GET /api/v1/fleet/me` every `--probe-interval` s and `POST /api/v1/fleet/queries/run`
  on one host every second (user API latency while the fleet long-polls).

Per campaign it measures, from just before its `POST /queries/run`: (a) each host's
distributed/write reply, as the host saw it, and (b) each result's arrival on the stream;
and the server's and the hosts' CPU from the POST until every result streamed and the
hosts' next reads arrived, per answering host. It prints p50/p95/max, CPU per host against
the bare endpoint's per request, the hosts' CPU against the server's (the generator must
cost at most a third), the server's RSS, and the user calls' latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench._harness import Measurement, Report, format_table
from bench._http_load import PhaseResult
from bench._latency import Spread, spread
from bench._lean_agents import raise_open_file_limit
from bench._lean_fleet import (
    CAMPAIGN_SQL,
    Agents,
    Prober,
    Round,
    admin_client,
    host_ids,
    reenroll_check,
    run_campaign,
    serve_command,
    settle,
    shown,
    wait_enrolled,
)
from bench._lean_wire import LIVE_PREFIX, write_body
from bench._processes import CpuWindow, free_port, listening, memory_kib, profiled

#: Targets of issue 17.
TARGET_STREAMED_P95_S = 1.5
TARGET_POST_P95_S = 0.100
MAX_AGENT_SHARE = 1 / 3


# --- the whole run -------------------------------------------------------------------------


@dataclass
class FleetRun:
    """Everything one run measured."""

    args: argparse.Namespace
    command: list[str]
    bare: PhaseResult
    settle_s: float = 0.0
    reenroll_s: float = 0.0
    idle_window: float = 0.0
    idle_server_cpu: float = 0.0
    idle_agents_cpu: float = 0.0
    idle_reads: int = 0
    rounds: list[Round] = field(default_factory=list)
    probes: dict[str, list[float]] = field(default_factory=dict)
    probe_failures: list[str] = field(default_factory=list)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    agents_status: dict[str, Any] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    server_pid: int = 0
    campaign_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bare_ms(self) -> float:
        assert self.bare.server_cpu is not None
        return self.bare.server_cpu / max(1, self.bare.completed) * 1e3

    def written(self) -> list[float]:
        return [x for r in self.rounds for x in r.written]

    def streamed(self) -> list[float]:
        return [x for r in self.rounds for x in r.streamed]

    def answered(self) -> int:
        return sum(r.answered for r in self.rounds)

    def server_ms_per_host(self) -> float:
        return sum(r.server_cpu for r in self.rounds) / max(1, self.answered()) * 1e3

    def server_ms_per_host_net(self) -> float:
        """Server CPU per answering host less what the idle long-poll costs in as long."""
        idle_rate = self.idle_server_cpu / max(self.idle_window, 1e-9)
        cpu = sum(r.server_cpu - idle_rate * r.wall for r in self.rounds)
        return cpu / max(1, self.answered()) * 1e3

    def agents_ms_per_host(self) -> float:
        return sum(r.agents_cpu for r in self.rounds) / max(1, self.answered()) * 1e3

    def missing(self) -> int:
        return sum(max(0, r.online - r.answered) for r in self.rounds)


async def measure(args: argparse.Namespace) -> FleetRun:
    """One full run (see the module docstring)."""
    raise_open_file_limit()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-fleet-") as tmp:
        port, bare_port = free_port(), free_port()
        data_dir = Path(tmp, "data")
        command = serve_command(args, port, data_dir)
        with Agents(port, args.fail_every) as agents:
            bare_command = [sys.executable, "-m", "bench._bare_server", str(bare_port)]
            with listening(bare_command, bare_port, Path(tmp, "bare.log")) as bare:
                body = orjson.dumps(
                    write_body("k" * 32, {f"{LIVE_PREFIX}1": CAMPAIGN_SQL}, 1, 1, False)
                )
                print(f"baseline: {args.bare_connections} connections on the bare endpoint")
                bare_result: PhaseResult = agents.ask(
                    "bare",
                    bare_port,
                    body,
                    args.bare_connections,
                    1.0,
                    args.bare_seconds,
                    bare.pid,
                    timeout=args.bare_seconds + 60,
                )
            run = FleetRun(args, command, bare_result)
            print(f"  bare endpoint: {run.bare_ms:.4f} ms CPU per request")
            print(f"server: {shown(command)}", flush=True)
            with listening(command, port, Path(tmp, "server.log")) as server:
                run.server_pid = server.pid
                await _measure_server(run, agents, server, f"http://127.0.0.1:{port}", rng)
                run.memory["server at end"] = memory_kib(server.pid)
                run.agents_status = agents.ask("status")
                run.memory["lean hosts"] = memory_kib(agents.pid)
                agents.close()  # before the server stops: no disconnect counted
            log = Path(tmp, "server.log").read_text(encoding="utf-8", errors="replace")
            run.server_errors = [
                line for line in log.splitlines() if "ERROR" in line or "Traceback" in line
            ]
    return run


def _profile_path(args: argparse.Namespace, phase: str) -> Path | None:
    if args.py_spy is None:
        return None
    Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    return Path(args.py_spy, f"server-{phase}.txt")


async def _measure_server(
    run: FleetRun,
    agents: Agents,
    server: subprocess.Popen[bytes],
    url: str,
    rng: random.Random,
) -> None:
    args = run.args
    async with admin_client(url) as client:
        print(f"starting {args.hosts:,} lean hosts, {args.start_rate:g} a second", flush=True)
        if args.ramp:
            # In steps, each once the last enrolled (with everything at once, the server
            # sheds the enrolls past its admission bounds and the hosts retry with
            # osquery's backoff: slower to settle, and the settle time is not measured).
            launched = 0
            while launched < args.hosts:
                step = min(args.ramp, args.hosts - launched)
                agents.ask("start", step, args.start_rate)
                launched += step
                await asyncio.to_thread(wait_enrolled, agents, launched, args.settle_timeout)
        else:
            agents.ask("start", args.hosts, args.start_rate)
        run.settle_s = await asyncio.to_thread(settle, agents, args)
        run.memory["server settled"] = memory_kib(server.pid)
        print(
            f"  settled in {run.settle_s:.0f} s; server RSS "
            f"{run.memory['server settled'].get('VmRSS', 0) / 1024:.0f} MiB",
            flush=True,
        )
        run.reenroll_s = await reenroll_check(client, agents, args)
        print(f"  a deleted host enrolled again after {run.reenroll_s:.1f} s", flush=True)
        ids = await host_ids(client, args.hosts)
        prober = Prober(url, client.headers["Authorization"], args.probe_interval, ids)
        prober.start()
        try:
            # Idle: every host long-polls, nothing pending.
            prober.phase = "idle long-poll"
            reads = agents.ask("status")["counts"].get("read", 0)
            cpu = CpuWindow(server.pid, agents.pid)
            started = time.monotonic()
            with profiled(server.pid, _profile_path(args, "idle"), args.py_spy_rate):
                await asyncio.sleep(args.idle_window)
            run.idle_window = time.monotonic() - started
            run.idle_server_cpu, run.idle_agents_cpu = cpu.spent()
            run.idle_reads = agents.ask("status")["counts"].get("read", 0) - reads
            window = run.idle_window
            print(
                f"  idle {window:.0f} s: server {run.idle_server_cpu / window:.0%}"
                f" of a core, lean hosts {run.idle_agents_cpu / window:.0%}, "
                f"{run.idle_reads / run.idle_window:,.0f} reads/s",
                flush=True,
            )
            prober.phase = "campaigns"
            with profiled(server.pid, _profile_path(args, "campaigns"), args.py_spy_rate):
                for n in range(args.campaigns):
                    await asyncio.sleep(rng.uniform(0, args.hold + args.interval))
                    one = await run_campaign(client, agents, server.pid, args)
                    run.rounds.append(one)
                    line = spread(one.streamed).line() if one.streamed else "nothing streamed"
                    print(
                        f"  campaign {n + 1}/{args.campaigns}: POST {one.posted * 1e3:.0f} ms, "
                        f"{one.answered:,}/{one.online:,} streamed ({one.status}); {line}; CPU "
                        f"server {one.server_cpu:.2f} s, lean hosts {one.agents_cpu:.2f} s",
                        flush=True,
                    )
        finally:
            prober.phase = ""
            prober.stopping.set()
            prober.join(70)
        run.probes = prober.samples
        run.probe_failures = prober.failures
        run.memory["server after campaigns"] = memory_kib(server.pid)
        if run.rounds and args.hosts <= 1000:  # the quick run's protocol check reads them
            results = await client.get(
                f"/api/v1/fleet/campaigns/{run.rounds[-1].campaign_id}/results",
                params={"per_page": 1000},
            )
            results.raise_for_status()
            run.campaign_results = list(results.json()["results"])


# --- the report ---------------------------------------------------------------------------


def _spread_row(name: str, values: Sequence[float], unit: float = 1.0) -> list[str]:
    if not values:
        return [name, "0", "", "", ""]
    s: Spread = spread(values)
    return [name, f"{s.count:,}", *(f"{v * unit:.3f}" for v in (s.p50, s.p95, s.max))]


def latency_table(run: FleetRun) -> str:
    """p50/p95/max of the campaign latencies (s) and of the user calls (ms)."""
    rows = [
        _spread_row("(a) write reply, s", run.written()),
        _spread_row("(b) result streamed, s", run.streamed()),
        _spread_row("POST /queries/run (all hosts), s", [r.posted for r in run.rounds]),
    ]
    rows += [_spread_row(f"{name}, ms", values, 1e3) for name, values in sorted(run.probes.items())]
    return format_table(["latency from campaign creation", "n", "p50", "p95", "max"], rows)


def report(run: FleetRun) -> Report:
    args = run.args
    rep = Report(
        bench="fleet",
        baseline="bare endpoint",
        params={
            "hosts": args.hosts,
            "hold": args.hold,
            "interval": args.interval,
            "campaigns": args.campaigns,
            "backend": "postgresql" if args.database_url else "sqlite",
            "workers": args.workers,
            "server": shown(run.command[1:]),
        },
    )
    rep.add(Measurement("bare endpoint", run.bare_ms, "ms CPU/request", False))
    server_ms = run.server_ms_per_host()
    agents_ms = run.agents_ms_per_host()
    idle_ms = run.idle_server_cpu / max(1, run.idle_reads) * 1e3
    rep.add(Measurement("server, host round trip", server_ms, "ms CPU/host", False))
    net_ms = run.server_ms_per_host_net()
    rep.add(Measurement("server, round trip net of idle", net_ms, "ms CPU/host", False))
    rep.add(Measurement("server, idle check-in", idle_ms, "ms CPU/read", False))
    rep.add(Measurement("lean hosts, host round trip", agents_ms, "ms CPU/host", False))
    streamed, written = run.streamed(), run.written()
    post = [r.posted for r in run.rounds]
    post_idle = run.probes.get("POST /queries/run (1 host), idle long-poll", [])
    extra = {
        "streamed": spread(streamed).as_dict() if streamed else {},
        "written": spread(written).as_dict() if written else {},
        "post_all_hosts_s": [round(x, 4) for x in post],
        "probes_ms": {
            k: {
                kk: round(vv * 1e3, 3) if kk != "count" else vv
                for kk, vv in spread(v).as_dict().items()
            }
            for k, v in run.probes.items()
        },
        "memory_kib": run.memory,
        "settle_s": round(run.settle_s, 1),
        "reenroll_s": round(run.reenroll_s, 2),
        "idle": {
            "window_s": round(run.idle_window, 1),
            "server_cpu_s": round(run.idle_server_cpu, 3),
            "agents_cpu_s": round(run.idle_agents_cpu, 3),
            "reads": run.idle_reads,
        },
        "rounds": [
            {
                "campaign_id": r.campaign_id,
                "online": r.online,
                "answered": r.answered,
                "status": r.status,
                "posted_s": round(r.posted, 4),
                "wall_s": round(r.wall, 2),
                "server_cpu_s": round(r.server_cpu, 3),
                "agents_cpu_s": round(r.agents_cpu, 3),
            }
            for r in run.rounds
        ],
        "agent_counts": run.agents_status.get("counts", {}),
    }
    rep.get("server, host round trip").extra.update(extra)
    share = agents_ms / server_ms if server_ms else float("inf")
    rep.notes.append(
        f"lean hosts cost {share:.2f} of the server's CPU per host round trip "
        f"({'within' if share <= MAX_AGENT_SHARE else 'ABOVE'} the 1/3 budget)"
    )
    if streamed:
        p95 = spread(streamed).p95
        verdict = "meets" if p95 < TARGET_STREAMED_P95_S else "does NOT meet"
        rep.notes.append(
            f"streamed p95 {p95:.3f} s: {verdict} the {TARGET_STREAMED_P95_S} s target of issue 17"
        )
    if post_idle:
        p95 = spread(post_idle).p95
        rep.notes.append(
            f"POST /queries/run (1 host) while {args.hosts:,} hosts long-poll: p95 "
            f"{p95 * 1e3:.1f} ms ({'meets' if p95 < TARGET_POST_P95_S else 'does NOT meet'} "
            f"the 100 ms target)"
        )
    rss = run.memory.get("server after campaigns", {})
    rep.notes.append(
        f"server RSS {rss.get('VmRSS', 0) / 1024:.0f} MiB after the campaigns "
        f"(peak {rss.get('VmHWM', 0) / 1024:.0f} MiB), "
        f"{run.memory.get('server settled', {}).get('VmRSS', 0) / 1024:.0f} MiB settled; "
        f"idle: server {run.idle_server_cpu / max(run.idle_window, 1e-9):.0%} of a core for "
        f"{run.idle_reads / max(run.idle_window, 1e-9):,.0f} reads/s"
    )
    counts = run.agents_status.get("counts", {})
    rep.notes.append(
        f"protocol: {counts.get('node_invalid', 0)} node_invalid answered, "
        f"{counts.get('reenrolled', 0)} re-enrolled (a deleted host after {run.reenroll_s:.1f} s), "
        f"{counts.get('errors', 0)} failed requests, {counts.get('timeouts', 0)} timeouts, "
        f"{counts.get('disconnects', 0)} disconnects; {run.missing()} online hosts did not "
        f"answer; {len(run.probe_failures)} failed user calls; "
        f"{len(run.server_errors)} server error lines"
    )
    now_load = [round(x, 2) for x in os.getloadavg()]
    rep.notes.append(f"load average at end {now_load} (2 cores shared with other engineers)")
    return rep


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench fleet", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--hosts", type=int, default=10_000, help="lean hosts")
    parser.add_argument("--hold", type=float, default=5.0, help="--distributed-hold (s)")
    parser.add_argument("--interval", type=int, default=1, help="--distributed-interval (s)")
    parser.add_argument("--campaigns", type=int, default=3, help="campaigns on all hosts")
    parser.add_argument("--start-rate", type=float, default=200.0, help="hosts started per s")
    parser.add_argument(
        "--ramp",
        type=int,
        default=0,
        metavar="N",
        help="start the hosts N at a time, each step once the last enrolled (0: all at once)",
    )
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="s to settle")
    parser.add_argument("--idle-window", type=float, default=20.0, help="s of idle long-poll")
    parser.add_argument("--campaign-timeout", type=float, default=60.0, help="campaign timeout")
    parser.add_argument("--bare-seconds", type=float, default=5.0, help="baseline duration")
    parser.add_argument("--bare-connections", type=int, default=64, help="baseline connections")
    parser.add_argument("--probe-interval", type=float, default=0.25, help="s between GET /me")
    parser.add_argument(
        "--fail-every", type=int, default=0, help="every Nth host fails live queries (status 1)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the pauses")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default SQLite)")
    parser.add_argument("--redis-url", default=None, help="Redis URL (cluster mode)")
    parser.add_argument(
        "--enroll-failure-limit",
        type=int,
        default=None,
        help="the server's --enroll-failure-limit (0: off). Every lean host enrolls from "
        "127.0.0.1; only failed enrolls spend the address's budget, so the default is fine",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="fleetwatch serve --workers (needs --database-url and --redis-url); server CPU "
        "and RSS are summed over the supervisor and its workers",
    )
    parser.add_argument(
        "--py-spy",
        default=None,
        metavar="DIR",
        help="profile the server with py-spy (raw stacks per thread) into DIR: "
        "server-idle.txt (the idle window) and server-campaigns.txt (the campaigns)",
    )
    parser.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per s")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small protocol check: 20 hosts, hold 1 s, one campaign, every 5th host fails",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.hold, args.interval, args.campaigns = 20, 1.0, 1, 1
        args.start_rate, args.idle_window, args.bare_seconds = 50.0, 3.0, 1.0
        args.bare_connections, args.fail_every = 4, args.fail_every or 5
    if args.hosts < 1 or args.campaigns < 1 or args.start_rate <= 0:
        parser.error("--hosts, --campaigns and --start-rate must be positive")
    if not 0 < args.hold < 14:
        parser.error("--hold must be between 0 and 14 s (osquery gives up after 16 s)")
    return args


def main(argv: list[str]) -> int:
    """Run once and print; 1 when an online host's result never arrived or a call failed."""
    args = _parse(argv)
    run = asyncio.run(measure(args))
    rep = report(run)
    rep.print()
    print(latency_table(run))
    path = rep.save()
    print(f"results appended to {path}")
    failed = run.missing() or run.agents_status.get("counts", {}).get("errors", 0)
    return 1 if failed or run.probe_failures else 0
