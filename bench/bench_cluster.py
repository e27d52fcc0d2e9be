"""Cluster: check-in throughput and live query latency on 1, 2 and 3 nodes, and a large fleet.

Everything runs for real on this machine: a PostgreSQL and a Redis server (`tests.services`)
and N `fleetwatch serve` processes on loopback (`tests.cluster.harness.Cluster`, the deployment
of docs/deploy.md minus the load balancer). Three parts, each a report of its own with its
baseline measured in the same run:

1. `cluster_checkin`: three nodes with `--distributed-hold 0`; hosts enroll on node 1 and
   answer their detail queries (`bench.bench_checkin`), every node sees every host once
   (unmeasured), then rounds of `distributed/read` with nothing pending against the first N
   nodes (N = 1, 2, 3, the same total number of keep-alive connections split evenly over
   them; the load generator of `bench._http_load`, one process per node). Requests/s per N and
   the ratio against N = 1, and the CPU every process used during the rounds (nodes,
   PostgreSQL with its backends, Redis, the load generators), as % of one core.
2. `cluster_latency`: for N = 1, 2, 3, a fresh database, an emptied Redis and N nodes with the
   long-poll hold on and `distributed_interval` pushed to the agents; a simulated fleet
   (`fleetwatch.sim.Fleet`, one process) spread evenly over the nodes settles, then campaigns
   created on node 1, each streamed from node 1 (`bench.bench_live_latency`'s campaign
   runner: SSE, the same messages as the WebSocket). Per online host, the time from creation
   to its result stored and streamed; p50/p95/p99 and the p95 ratio against N = 1.
3. `cluster_scale`: `--scale-hosts` (20,000) simulated hosts across three nodes: do they all
   enroll and keep checking in (server request counters and the simulator's), CPU and memory
   of each process while idle, and the latency of one live query over them, against the
   N = 3 run of part 2 as the baseline. If the fleet does not settle, what it reached.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.cluster.harness import Cluster

from bench import bench_live_latency
from bench._cluster_backends import (
    Backends,
    Processes,
    backends,
    busy,
    busy_line,
    running,
)
from bench._cluster_checkin import (
    NODE_COUNTS,
    measure_checkin,
    report_params,
)
from bench._harness import RESULTS_DIR, Measurement, Report, ratio, summarize
from bench._latency import Mode, spread
from bench._sim_fleet_process import ENROLL_SECRET, FleetProcess, merge_statuses
from bench.bench_live_latency import CampaignRun

# --- parts 2 and 3: a simulated fleet across the nodes ---------------------------------------


@dataclass
class FleetRun:
    """One cluster with a simulated fleet: settling, idle cost, campaigns."""

    nodes: int
    hosts: int
    settled: bool = False
    settle_s: float = 0.0
    fleet_status: dict[str, Any] = field(default_factory=dict)
    idle_busy: dict[str, float] = field(default_factory=dict)
    idle_rss: dict[str, int] = field(default_factory=dict)
    #: distributed/read per second per host while idle: server counters (all nodes), sim.
    idle_reads: float = 0.0
    sim_idle_reads: float = 0.0
    campaigns: list[CampaignRun] = field(default_factory=list)
    campaign_busy: list[dict[str, float]] = field(default_factory=list)

    def streamed(self) -> list[float]:
        return [x for c in self.campaigns for x in c.streamed]

    def stored(self) -> list[float]:
        return [x for c in self.campaigns for x in c.stored]


class FleetGroup(FleetProcess):
    """The simulated fleet as one process per node, each with its share of the hosts: one
    process cannot hold a socket per host beyond its open-file hard limit (20,000 here)."""

    def __init__(self, cluster: Cluster, hosts: int, args: argparse.Namespace) -> None:
        bounds = [hosts * i // cluster.size for i in range(cluster.size + 1)]
        self.members = [
            FleetProcess(
                node.url,
                argparse.Namespace(
                    hosts=bounds[i + 1] - bounds[i],
                    # Every share starts over the same period: the rate is split too.
                    start_rate=args.start_rate * (bounds[i + 1] - bounds[i]) / hosts,
                    seed=args.seed,
                    first_index=bounds[i],
                ),
                str(cluster.directory / f"fleet{node.number}.log"),
            )
            for i, node in enumerate(cluster.nodes)
        ]
        self.proc = self.members[0].proc

    def poll(self, wait: float = 0.0) -> dict[str, Any]:
        """The members' newest statuses, merged."""
        statuses = [member.poll(wait) for member in self.members]
        if not all(statuses):
            return {}
        return merge_statuses(statuses)

    def close(self) -> None:
        for member in self.members:
            member.close()


async def _reads(clients: Sequence[httpx.AsyncClient]) -> float:
    """distributed/read requests counted by every node so far."""
    counts = [await bench_live_latency._metrics(client) for client in clients]
    return sum(c.get("distributed_read", 0.0) for c in counts)


def _fleet_run(
    back: Backends, args: argparse.Namespace, nodes: int, hosts: int, campaigns: int
) -> FleetRun:
    """N fresh nodes with the hold on and `hosts` simulated hosts spread over them."""
    settings = {
        "DISTRIBUTED_HOLD": f"{args.hold:g}",
        "DISTRIBUTED_INTERVAL": str(args.interval),
        "ENROLL_SECRET": ENROLL_SECRET,
    }
    with running(back.cluster(nodes, settings), back.errors) as cluster:
        procs = back.processes(cluster)
        return asyncio.run(_fleet_measure(cluster, procs, args, FleetRun(nodes, hosts), campaigns))


async def _fleet_measure(
    cluster: Cluster, procs: Processes, args: argparse.Namespace, run: FleetRun, campaigns: int
) -> FleetRun:
    mode = Mode(args.hold, args.interval)
    nodes, hosts = run.nodes, run.hosts
    rng = random.Random(args.seed + nodes)
    token = cluster.login(1)
    print(f"{nodes} node(s), {hosts:,} hosts: starting the simulated fleet ...")
    fleet = FleetGroup(cluster, hosts, args)
    for number, member in enumerate(fleet.members, 1):
        procs.add(f"simulator{number}", member.proc.pid)
    headers = {"Authorization": f"Bearer {token}"}
    clients = [
        httpx.AsyncClient(base_url=n.url, headers=headers, timeout=60) for n in cluster.nodes
    ]
    try:
        try:
            run.settle_s = await fleet.settle(mode, hosts / args.start_rate + args.settle_timeout)
            run.settled = True
            print(f"  settled in {run.settle_s:.0f} s")
        except TimeoutError as exc:
            print(f"  did NOT settle: {exc}")
        run.fleet_status = fleet.poll()
        window = max(args.idle_window, 2 * mode.cycle)
        cpu_before, reads_before, sim_before = procs.cpu(), await _reads(clients), fleet.poll()
        started = time.monotonic()
        await asyncio.sleep(window)
        window = time.monotonic() - started
        run.idle_busy = busy(cpu_before, procs.cpu(), window)
        run.idle_rss = procs.rss()
        run.idle_reads = (await _reads(clients) - reads_before) / hosts / window
        sim_after = await asyncio.to_thread(fleet.poll, 2.0)
        sim_reads = bench_live_latency._sim_rates(sim_before, sim_after, hosts)
        run.sim_idle_reads = sim_reads.get("distributed_read", 0.0)
        run.fleet_status = sim_after
        print(
            f"  idle: {run.idle_reads:.4f} distributed/read per s per host "
            f"(sim {run.sim_idle_reads:.4f}; {1 / mode.cycle:.4f} if all check in); "
            f"CPU {busy_line(run.idle_busy)}"
        )
        if not run.settled and sim_after.get("enrolled", 0) == 0:
            return run
        node1 = cluster.node(1)
        assert node1.process is not None and fleet.proc.pid is not None
        for number in range(1, campaigns + 1):
            await asyncio.sleep(rng.uniform(0, mode.cycle))
            before, started = procs.cpu(), time.monotonic()
            campaign = await bench_live_latency._run_campaign(
                clients[0], args.campaign_timeout, node1.process.pid, fleet.proc.pid
            )
            run.campaign_busy.append(busy(before, procs.cpu(), time.monotonic() - started))
            run.campaigns.append(campaign)
            lat = spread(campaign.streamed) if campaign.streamed else None
            print(
                f"  campaign {number}/{campaigns}: {campaign.status}, "
                f"{len(campaign.streamed):,}/{campaign.online:,} online hosts answered"
                + (f"; streamed {lat.line()}" if lat else "")
            )
    finally:
        for client in clients:
            await client.aclose()
        fleet.close()
    return run


def _campaign_note(name: str, run: FleetRun) -> str:
    streamed, stored = spread(run.streamed()), spread(run.stored())
    missing = sum(c.missing for c in run.campaigns)
    shares: dict[str, float] = {}
    for b in run.campaign_busy:
        for k, v in b.items():
            shares[k] = shares.get(k, 0.0) + v / len(run.campaign_busy)
    return (
        f"{name}: streamed {streamed.line()}; stored {stored.line()}; last host per campaign "
        f"{', '.join(f'{max(c.streamed):.2f}' for c in run.campaigns if c.streamed)} s; "
        f"{missing} online hosts did not answer; CPU during the campaigns: {busy_line(shares)}"
    )


def _fleet_measurement(name: str, run: FleetRun) -> Measurement:
    streamed = run.streamed()
    return Measurement(
        name=name,
        value=spread(streamed).p95 if streamed else math.nan,
        unit="s p95 streamed",
        higher_is_better=False,
        latencies=summarize(streamed) if streamed else None,
        extra={
            "streamed": spread(streamed).as_dict() if streamed else {},
            "stored": spread(run.stored()).as_dict() if streamed else {},
            "online": [c.online for c in run.campaigns],
            "missing_results": sum(c.missing for c in run.campaigns),
            "statuses": [c.status for c in run.campaigns],
            "settled": run.settled,
            "settle_s": round(run.settle_s, 1),
            "idle_cpu_busy": run.idle_busy,
            "idle_rss_mib": {k: round(v / 2**20) for k, v in run.idle_rss.items()},
            "idle_reads_per_s_per_host": round(run.idle_reads, 5),
            "sim_idle_reads_per_s_per_host": round(run.sim_idle_reads, 5),
            "campaign_cpu_busy": run.campaign_busy,
        },
    )


def measure_latency(back: Backends, args: argparse.Namespace) -> tuple[Report, FleetRun]:
    """Part 2: live query latency on 1, 2, 3 nodes; also returns the 3-node run."""
    runs = {n: _fleet_run(back, args, n, args.fleet_hosts, args.campaigns) for n in NODE_COUNTS}
    report = Report(
        bench="cluster_latency",
        baseline="1 node",
        params=report_params(args, "fleet_hosts hold interval campaigns start_rate"),
    )
    for n, run in runs.items():
        name = f"{n} node" + ("s" if n > 1 else "")
        report.add(_fleet_measurement(name, run))
        if run.streamed():
            report.notes.append(_campaign_note(name, run))
        report.notes.append(
            f"{name}: idle CPU {busy_line(run.idle_busy)}; "
            f"{run.idle_reads:.4f} reads/s/host (expected {1 / args.cycle:.4f})"
        )
    return report, runs[max(NODE_COUNTS)]


def measure_scale(back: Backends, args: argparse.Namespace, baseline: FleetRun) -> Report:
    """Part 3: many hosts across three nodes against the small 3-node run."""
    nodes = max(NODE_COUNTS)
    run = _fleet_run(back, args, nodes, args.scale_hosts, 1)
    report = Report(
        bench="cluster_scale",
        baseline=f"{nodes} nodes, {baseline.hosts:,} hosts",
        params=report_params(args, "scale_hosts hold interval start_rate", nodes=nodes),
    )
    report.add(_fleet_measurement(report.baseline, baseline))
    name = f"{nodes} nodes, {run.hosts:,} hosts"
    report.add(_fleet_measurement(name, run))
    status = run.fleet_status
    report.notes.append(
        f"{name}: {'settled' if run.settled else 'did NOT settle'} after "
        f"{run.settle_s:.0f} s; simulator: {status.get('enrolled', 0):,} of "
        f"{status.get('hosts', run.hosts):,} enrolled, {status.get('answered', 0):,} answered "
        f"a query, errors {status.get('errors', {})}, last error {status.get('last_error')!r}"
    )
    report.notes.append(
        f"{name}: idle {run.idle_reads:.4f} distributed/read per s per host counted by the "
        f"nodes, {run.sim_idle_reads:.4f} by the simulator ({1 / args.cycle:.4f} if every "
        f"host checks in every hold+interval); CPU {busy_line(run.idle_busy)}; memory "
        + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in run.idle_rss.items())
    )
    if run.streamed():
        report.notes.append(_campaign_note(name, run))
    return report


# --- command line ---------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench cluster", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small run (under 2 minutes)")
    parser.add_argument("--parts", default="checkin,latency,scale", help="parts to run")
    parser.add_argument("--hosts", type=int, default=2000, help="check-in: enrolled hosts")
    parser.add_argument("--connections", type=int, default=126, help="check-in: connections")
    parser.add_argument("--duration", type=float, default=5.0, help="check-in: s per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="check-in: unmeasured s")
    parser.add_argument("--rounds", type=int, default=3, help="check-in: rounds of N=1,2,3")
    parser.add_argument("--fleet-hosts", type=int, default=1500, help="latency: hosts")
    parser.add_argument("--campaigns", type=int, default=3, help="latency: campaigns per N")
    parser.add_argument("--hold", type=float, default=10.0, help="long-poll hold (s)")
    parser.add_argument("--interval", type=int, default=10, help="distributed_interval (s)")
    parser.add_argument("--scale-hosts", type=int, default=20_000, help="scale: hosts")
    parser.add_argument("--start-rate", type=float, default=100.0, help="hosts started per s")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="s after starting")
    parser.add_argument("--idle-window", type=float, default=30.0, help="idle cost window (s)")
    parser.add_argument("--campaign-timeout", type=float, default=90.0, help="campaign (s)")
    parser.add_argument("--seed", type=int, default=1, help="simulator and pause seed")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="directory of the results files"
    )
    args = parser.parse_args(argv)
    if args.quick:
        quick = {
            "hosts": 300,
            "connections": 30,
            "duration": 1.5,
            "warmup": 0.5,
            "rounds": 1,
            "fleet_hosts": 30,
            "campaigns": 1,
            "hold": 2.0,
            "interval": 1,
            "scale_hosts": 90,
            "start_rate": 100.0,
            "settle_timeout": 60.0,
            "idle_window": 2.0,
            "campaign_timeout": 20.0,
        }
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    args.part_list = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.part_list) - {"checkin", "latency", "scale"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}: use checkin, latency, scale")
    args.cycle = args.hold + args.interval
    return args


def main(argv: list[str]) -> int:
    """Run the parts; returns 1 when a request failed or an online host never answered."""
    args = _parse(argv)
    # SIGTERM (e.g. from `timeout`) unwinds, so the nodes, PostgreSQL and Redis are stopped.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    load = [round(x, 2) for x in os.getloadavg()]
    reports: list[Report] = []
    failed = 0
    three: FleetRun | None = None
    with backends() as back:
        if "checkin" in args.part_list:
            reports.append(measure_checkin(back, args))
            failed += reports[-1].params["failed_requests"]
        if "latency" in args.part_list:
            report, three = measure_latency(back, args)
            reports.append(report)
        if "scale" in args.part_list:
            if three is None:
                print("scale: its baseline, the small fleet on 3 nodes ...")
                three = _fleet_run(back, args, max(NODE_COUNTS), args.fleet_hosts, args.campaigns)
            reports.append(measure_scale(back, args, three))
        if back.errors:
            for report in reports:
                report.notes.append(
                    f"{len(back.errors)} error records in the node logs; first: {back.errors[0]}"
                )
    end_load = [round(x, 2) for x in os.getloadavg()]
    for report in reports:
        report.notes.append(f"load average at start {load}, at end {end_load}")
        report.print()
        print(f"results appended to {report.save(args.results)}")
        for m in report.measurements:
            failed += m.extra.get("missing_results", 0)
            failed += 0 if m.extra.get("settled", True) else 1
    ratios = [
        f"{r.bench} {m.name} {ratio(m.value, r.get(r.baseline).value):.2f}x"
        for r in reports
        for m in r.measurements
        if m.name != r.baseline
    ]
    print("ratios against each part's baseline: " + "; ".join(ratios))
    return 1 if failed else 0
