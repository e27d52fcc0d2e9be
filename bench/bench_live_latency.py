"""Live query latency: campaign creation to each online host's result stored and streamed.

Compares the long-poll (distributed/read held up to `--distributed-hold` seconds, answered
the moment a campaign targets the host) with Fleet's model (no hold: hosts poll every
`distributed_interval` seconds), measured in the same run. Each mode is a `HOLD:INTERVAL`
pair; the mode with hold 0 is the baseline. For each mode:

- the real server (`create_app` under `uvicorn_config`, as `fleetwatch serve` runs it,
  SQLite in a temp dir, admin from the settings, an enroll secret) starts in its own process
  with `distributed_hold=HOLD` and `distributed_interval=INTERVAL` (pushed to the agents in
  the config options);
- N simulated hosts (`fleetwatch.sim.Fleet`) run in another process, enroll spread over
  N / `--start-rate` seconds, and settle: every host enrolled and answered its detail and
  label queries, and no host was offered any query but a campaign's for HOLD+INTERVAL+5 s;
- this process runs `--campaigns` campaigns (`SELECT ... FROM system_info` on all hosts),
  each after a random pause of up to HOLD+INTERVAL seconds (so campaigns land at random
  points of the hosts' cycles), and subscribes to each campaign's Server-Sent Events.

Per online host, the latency is measured from just before `POST /api/v1/fleet/queries/run`
until its result is *stored* (the result's `received_at`, set as the server builds the
result document, before the batch commits) and *streamed* (this process reads its SSE
`result` message; results already committed when the stream opens are replayed and counted
at the time they arrive, so the streamed figure is an upper bound). It reports p50/p95/p99/max
over all campaigns, the time until the last online host per campaign, the ratio of the p95s,
and the request rate each mode costs the server (distributed/read and all agent requests
per second per host, from the server's /metrics, and the simulator's own count).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import random
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench._harness import Measurement, Report, format_ratio, ratio, summarize
from bench._http_load import cpu_seconds
from bench._latency import (
    Mode,
    SseParser,
    agent_request_counts,
    epoch,
    parse_modes,
    per_host_rate,
    spread,
)
from bench._processes import free_port, wait_ready
from bench._sim_fleet_process import (
    ENROLL_SECRET,
    FleetProcess,
    _serve,
)

TARGET_P95_S = 1.5
#: Issue 4's setting (hold 10, interval 10), DESIGN.md §5's (hold 10, interval 1), Fleet's.
DEFAULT_MODES = "10:10,10:1,0:10"
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "Bench-live-latency-1!"
CAMPAIGN_SQL = "SELECT hostname, uuid FROM system_info"
#: Sockets the server may hold per host (the held distributed/read, config and logger).
SERVER_FDS_PER_HOST = 2


# --- this process: the API client ---------------------------------------------------------


@dataclass
class CampaignRun:
    """One campaign's measured latencies (seconds from just before the POST)."""

    campaign_id: int
    online: int
    stored: list[float] = field(default_factory=list)
    streamed: list[float] = field(default_factory=list)
    status: str = "?"
    #: Seconds from the POST until its answer (the campaign id) and until the SSE headers.
    created_after: float = 0.0
    late_subscribe: float = 0.0
    #: Wall seconds from the POST to the final status, and the CPU seconds the server and
    #: the simulated fleet used meanwhile (what limited the campaign).
    duration: float = 0.0
    server_cpu: float = 0.0
    fleet_cpu: float = 0.0

    @property
    def missing(self) -> int:
        return self.online - len(self.streamed)


async def _run_campaign(
    client: httpx.AsyncClient, timeout: float, server_pid: int, fleet_pid: int
) -> CampaignRun:
    cpu_before = cpu_seconds(server_pid) or 0.0, cpu_seconds(fleet_pid) or 0.0
    started = time.time()
    created = await client.post(
        "/api/v1/fleet/queries/run",
        json={"query": CAMPAIGN_SQL, "targets": [{"type": "all"}], "timeout": timeout},
    )
    if created.status_code != 200:
        raise RuntimeError(f"campaign not created: {created.status_code} {created.text}")
    body = created.json()
    created_after = time.time() - started
    run = CampaignRun(body["campaign_id"], body["campaign"]["totals"]["online"])
    run.created_after = created_after
    parser = SseParser()
    seen: set[int] = set()
    async with client.stream(
        "GET", f"/api/v1/fleet/campaigns/{run.campaign_id}/events", timeout=timeout + 60
    ) as events:
        run.late_subscribe = time.time() - started
        async for line in events.aiter_lines():
            event = parser.feed(line)
            if event is None:
                continue
            kind, data = event
            now = time.time()
            message = orjson.loads(data)
            if kind == "result":
                result = message["data"]
                if result.get("queued") or result["host_id"] in seen:
                    continue
                seen.add(result["host_id"])
                run.streamed.append(now - started)
                run.stored.append(epoch(result["received_at"]) - started)
            elif kind == "status" and message["data"]["status"] != "running":
                run.status = message["data"]["status"]
                break
            elif kind == "error":
                raise RuntimeError(f"campaign stream error: {message}")
    run.duration = time.time() - started
    run.server_cpu = (cpu_seconds(server_pid) or 0.0) - cpu_before[0]
    run.fleet_cpu = (cpu_seconds(fleet_pid) or 0.0) - cpu_before[1]
    return run


async def _login(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.post(
            "/api/v1/fleet/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        answer.raise_for_status()
        token: str = answer.json()["token"]
        return token


async def _metrics(client: httpx.AsyncClient) -> dict[str, float]:
    answer = await client.get("/metrics")
    answer.raise_for_status()
    return agent_request_counts(answer.text)


@dataclass
class ModeResult:
    """Everything measured for one mode."""

    mode: Mode
    hosts: int
    campaigns: list[CampaignRun]
    window: float
    server_rates: dict[str, float]
    sim_rates: dict[str, float]
    idle_rates: dict[str, float]
    sim_idle_rates: dict[str, float]
    settle_s: float
    sim_errors: dict[str, int]

    def stored(self) -> list[float]:
        return [x for c in self.campaigns for x in c.stored]

    def streamed(self) -> list[float]:
        return [x for c in self.campaigns for x in c.streamed]

    def last_host(self) -> list[float]:
        """Per campaign: time until its last online host's result was streamed."""
        return [max(c.streamed) for c in self.campaigns if c.streamed]


def _rates(
    before: dict[str, float], after: dict[str, float], hosts: int, seconds: float
) -> dict[str, float]:
    return {k: per_host_rate(before.get(k, 0.0), v, hosts, seconds) for k, v in after.items()}


def _sim_rates(before: dict[str, Any], after: dict[str, Any], hosts: int) -> dict[str, float]:
    return _rates(before["requests"], after["requests"], hosts, after["time"] - before["time"])


async def _measure_mode(
    mode: Mode, args: argparse.Namespace, rng: random.Random, tmp: str
) -> ModeResult:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = Path(tmp, f"hold{mode.hold:g}-interval{mode.interval}")
    data_dir.mkdir()
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(data_dir),
        "database_url": args.database_url,
        "distributed_hold": mode.hold,
        "distributed_interval": mode.interval,
        "enroll_secret": ENROLL_SECRET,
        "admin_email": ADMIN_EMAIL,
        "admin_password": ADMIN_PASSWORD,
        "log_level": args.log_level,
    }
    ctx = mp.get_context("spawn")
    fds = SERVER_FDS_PER_HOST * args.hosts + 1024
    server = ctx.Process(
        target=_serve, args=(settings, str(data_dir / "server.log"), fds), daemon=True
    )
    server.start()
    fleet: FleetProcess | None = None
    try:
        await wait_ready(url, server, poll=0.2)
        token = await _login(url)
        print(f"{mode.name}: starting {args.hosts:,} simulated hosts ...")
        fleet = FleetProcess(url, args, str(data_dir / "fleet.log"))
        settle_s = await fleet.settle(mode, args.hosts / args.start_rate + args.settle_timeout)
        print(f"  settled in {settle_s:.0f} s")
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=60, limits=limits
        ) as client:
            # Request rate of the idle fleet (phases still spread by the staggered start):
            # counters read at both ends of a window of whole cycles.
            idle_window = max(args.idle_window, 2 * mode.cycle)
            idle_before, sim_idle_before = await _metrics(client), fleet.poll()
            idle_started = time.monotonic()
            await asyncio.sleep(idle_window)
            idle_after = await _metrics(client)
            idle_window = time.monotonic() - idle_started
            sim_idle_after = fleet.poll()
            idle_rates = _rates(idle_before, idle_after, args.hosts, idle_window)
            sim_idle_rates = _sim_rates(sim_idle_before, sim_idle_after, args.hosts)
            print(
                f"  idle: {idle_rates.get('distributed_read', 0.0):.4f} distributed/read "
                f"per s per host (sim: {sim_idle_rates.get('distributed_read', 0.0):.4f})"
            )
            before = idle_after
            sim_before = sim_idle_after
            started = time.monotonic()
            runs: list[CampaignRun] = []
            for n in range(args.campaigns):
                await asyncio.sleep(rng.uniform(0, mode.cycle))
                assert server.pid is not None and fleet.proc.pid is not None
                run = await _run_campaign(client, args.campaign_timeout, server.pid, fleet.proc.pid)
                runs.append(run)
                lat = spread(run.streamed) if run.streamed else None
                print(
                    f"  campaign {n + 1}/{args.campaigns}: {run.status}, "
                    f"{len(run.streamed):,}/{run.online:,} online hosts answered"
                    + (f"; streamed {lat.line()}" if lat else "")
                    + f"; CPU server {run.server_cpu:.1f} s, fleet {run.fleet_cpu:.1f} s "
                    f"in {run.duration:.1f} s"
                )
            window = time.monotonic() - started
            after = await _metrics(client)
            sim_after = await asyncio.to_thread(fleet.poll, 2.0)
        sim_rates = _sim_rates(sim_before, sim_after, args.hosts)
        server_rates = _rates(before, after, args.hosts, window)
        return ModeResult(
            mode,
            args.hosts,
            runs,
            window,
            server_rates,
            sim_rates,
            idle_rates,
            sim_idle_rates,
            settle_s,
            dict(sim_after.get("errors", {})),
        )
    finally:
        if fleet is not None:
            fleet.close()
        server.terminate()
        server.join(30)
        if server.is_alive():
            server.kill()
            server.join()
        log = Path(data_dir, "server.log")
        text = log.read_text(encoding="utf-8", errors="replace").strip() if log.exists() else ""
        errors = [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]
        if errors:
            print(f"  server log: {len(errors)} error lines; first: {errors[0][:300]}")


# --- the report ---------------------------------------------------------------------------


def _report(args: argparse.Namespace, results: Iterable[ModeResult], load: list[float]) -> Report:
    results = list(results)
    baseline = next(r for r in results if r.mode.hold == 0)
    report = Report(
        bench="live_latency",
        baseline=baseline.mode.name,
        params={
            "hosts": args.hosts,
            "modes": ", ".join(r.mode.name for r in results),
            "campaigns_per_mode": args.campaigns,
            "start_rate": args.start_rate,
            "backend": "postgresql" if args.database_url else "sqlite",
        },
    )
    base_p95 = spread(baseline.streamed()).p95 if baseline.streamed() else math.nan
    for r in results:
        streamed, stored = r.streamed(), r.stored()
        if not streamed:
            report.notes.append(f"{r.mode.name}: no result arrived")
            continue
        s_streamed, s_stored = spread(streamed), spread(stored)
        last = r.last_host()
        missing = sum(c.missing for c in r.campaigns)
        report.add(
            Measurement(
                name=r.mode.name,
                value=s_streamed.p95,
                unit="s p95 streamed",
                higher_is_better=False,
                latencies=summarize(streamed),
                extra={
                    "streamed": s_streamed.as_dict(),
                    "stored": s_stored.as_dict(),
                    "last_host_s": [round(x, 3) for x in last],
                    "missing_results": missing,
                    "statuses": [c.status for c in r.campaigns],
                    "created_s": [round(c.created_after, 3) for c in r.campaigns],
                    "subscribe_s": [round(c.late_subscribe, 3) for c in r.campaigns],
                    "idle_server_requests_per_s_per_host": _rounded(r.idle_rates),
                    "idle_sim_requests_per_s_per_host": _rounded(r.sim_idle_rates),
                    "campaigns_server_requests_per_s_per_host": _rounded(r.server_rates),
                    "campaigns_sim_requests_per_s_per_host": _rounded(r.sim_rates),
                    "settle_s": round(r.settle_s, 1),
                    "window_s": round(r.window, 1),
                    "sim_errors": r.sim_errors,
                },
            )
        )
        report.notes.append(
            f"{r.mode.name}: streamed {s_streamed.line()}; stored {s_stored.line()}; "
            f"last online host per campaign {', '.join(f'{x:.2f}' for x in last)} s; "
            f"{missing} online hosts did not answer; POST answered after "
            f"{', '.join(f'{c.created_after:.2f}' for c in r.campaigns)} s, stream opened "
            f"after {', '.join(f'{c.late_subscribe:.2f}' for c in r.campaigns)} s"
        )
        wall = sum(c.duration for c in r.campaigns)
        server_cpu = sum(c.server_cpu for c in r.campaigns)
        fleet_cpu = sum(c.fleet_cpu for c in r.campaigns)
        answers = max(1, len(streamed))
        report.notes.append(
            f"{r.mode.name}: during the campaigns the server used {server_cpu / wall:.0%} of "
            f"a core ({server_cpu / answers * 1e3:.2f} ms CPU per result), the simulated "
            f"fleet {fleet_cpu / wall:.0%} ({fleet_cpu / answers * 1e3:.2f} ms per result)"
        )
        report.get(r.mode.name).extra["campaign_cpu"] = {
            "wall_s": round(wall, 2),
            "server_cpu_s": round(server_cpu, 2),
            "fleet_cpu_s": round(fleet_cpu, 2),
        }
        report.notes.append(
            f"{r.mode.name}: server cost idle {_rate_line(r.idle_rates)}; during the "
            f"campaigns {_rate_line(r.server_rates)} (per s per host, server /metrics; the "
            f"simulator counted {r.sim_idle_rates.get('distributed_read', 0.0):.4f} and "
            f"{r.sim_rates.get('distributed_read', 0.0):.4f} reads)"
        )
    for r in results:
        if r is baseline or not r.streamed():
            continue
        p95 = spread(r.streamed()).p95
        verdict = "meets" if p95 < TARGET_P95_S else "does NOT meet"
        read_ratio = ratio(
            r.idle_rates.get("distributed_read", 0.0),
            baseline.idle_rates.get("distributed_read", 0.0),
        )
        report.notes.append(
            f"{r.mode.name} vs {baseline.mode.name}: p95 {p95:.3f} s vs {base_p95:.3f} s = "
            f"{format_ratio(p95, base_p95)}; {verdict} the p95 < {TARGET_P95_S} s target; "
            f"idle distributed/read rate {read_ratio:.2f}x the baseline's"
        )
    now_load = [round(x, 2) for x in os.getloadavg()]
    report.notes.append(
        f"load average at start {load}, at end {now_load} (2 cores shared with other "
        "engineers; server, simulated fleet and this client each in their own process)"
    )
    return report


def _rounded(rates: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in rates.items() if v}


def _rate_line(rates: dict[str, float]) -> str:
    reads = rates.get("distributed_read", 0.0)
    return f"{reads:.4f} distributed/read, {sum(rates.values()):.4f} agent requests"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench live_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--hosts", type=int, default=10_000, help="simulated hosts")
    parser.add_argument(
        "--modes",
        default=None,
        help=f"HOLD:INTERVAL pairs (seconds), exactly one with hold 0: the polling baseline "
        f"(default {DEFAULT_MODES}; --hold/--interval give 'HOLD:INTERVAL,0:INTERVAL')",
    )
    parser.add_argument("--hold", type=float, default=None, help="long-poll hold (s)")
    parser.add_argument("--interval", type=int, default=None, help="distributed_interval (s)")
    parser.add_argument("--campaigns", type=int, default=5, help="campaigns per mode")
    parser.add_argument("--start-rate", type=float, default=100.0, help="hosts started per second")
    parser.add_argument(
        "--settle-timeout", type=float, default=300.0, help="seconds to settle after starting"
    )
    parser.add_argument("--campaign-timeout", type=float, default=90.0, help="campaign timeout (s)")
    parser.add_argument(
        "--idle-window",
        type=float,
        default=30.0,
        help="seconds (at least two cycles) the idle request rate is measured over",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator and pause seed")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default SQLite)")
    parser.add_argument("--log-level", default="warning", help="server log level")
    args = parser.parse_args(argv)
    try:
        args.mode_list = parse_modes(_modes_text(args))
    except ValueError as exc:
        parser.error(str(exc))
    if args.hosts < 1 or args.campaigns < 1 or args.start_rate <= 0:
        parser.error("--hosts, --campaigns and --start-rate must be positive")
    return args


def _modes_text(args: argparse.Namespace) -> str:
    if args.modes is not None:
        if args.hold is not None or args.interval is not None:
            raise ValueError("give --modes or --hold/--interval, not both")
        return str(args.modes)
    if args.hold is None and args.interval is None:
        return DEFAULT_MODES
    hold = 10.0 if args.hold is None else args.hold
    interval = 10 if args.interval is None else args.interval
    return f"{hold:g}:{interval},0:{interval}"


def main(argv: list[str]) -> int:
    """Run every mode in turn; returns 1 when an online host's result never arrived."""
    args = _parse(argv)
    load = [round(x, 2) for x in os.getloadavg()]
    rng = random.Random(args.seed)
    results: list[ModeResult] = []
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-live-") as tmp:
        for mode in args.mode_list:
            results.append(asyncio.run(_measure_mode(mode, args, rng, tmp)))
    report = _report(args, results, load)
    report.print()
    path = report.save()
    print(f"results appended to {path}")
    missing = sum(c.missing for r in results for c in r.campaigns)
    return 1 if missing else 0
