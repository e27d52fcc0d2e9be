"""Part 1 of the cluster benchmark: check-in throughput on 1, 2 and 3 nodes of one cluster.

Hosts enroll once and answer their pending queries; then, in rounds, load clients send
empty distributed/reads to the first N nodes, and each node count's rate is measured against
the same cluster's other counts (the baseline is one node, measured in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from tests.cluster.harness import Cluster

from bench import bench_checkin
from bench._checkin_server import ENROLL_SECRET, READ_PATH, enroll_all
from bench._cluster_backends import (
    Backends,
    Processes,
    busy_line,
    running,
)
from bench._harness import Measurement, Report, format_number, summarize
from bench._http_load import LoadClients, PhaseResult, Phases, post_requests, split

NODE_COUNTS = (1, 2, 3)


@dataclass
class Throughput(bench_checkin._Totals):
    """All rounds of one node count: `bench_checkin`'s totals plus every process's CPU."""

    cpu: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def add_round(self, results: list[PhaseResult], cpu: Mapping[str, float], wall: float) -> float:
        """Add one round (all nodes' load generators) and what each process spent in it."""
        for name, seconds in cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        self.wall += wall
        return self.add(results)

    @property
    def failed(self) -> int:
        return self.errors + self.unexpected

    def busy(self) -> dict[str, float]:
        return {name: round(s / self.wall, 3) for name, s in self.cpu.items()}


async def answer_pending(url: str, keys: Sequence[str], concurrency: int = 16) -> int:
    """Each host reads once from the node at `url` and answers what it is offered (empty
    rows), as an agent would; returns how many hosts were offered something.

    A node that did not see a host answer its label queries offers them again (label
    freshness is kept per node), so the measured reads would not be empty otherwise."""
    gate = asyncio.Semaphore(concurrency)
    offered = 0
    path = READ_PATH
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(key: str) -> None:
            nonlocal offered
            async with gate:
                queries = (await client.post(path, json={"node_key": key})).json()["queries"]
                if queries:
                    offered += 1
                    await client.post(
                        path.replace("read", "write"),
                        json={
                            "node_key": key,
                            "queries": {name: [] for name in queries},
                            "statuses": {name: 0 for name in queries},
                        },
                    )

        await asyncio.gather(*(one(key) for key in keys))
    return offered


def _load_clients(cluster: Cluster, keys: list[str], connections: int) -> list[LoadClients]:
    """One load generator process per node; node k has a phase `nN` for every N >= k, with
    its share (connections / N) of the connections, cycling over every node key."""
    bodies = [orjson.dumps({"node_key": key}) for key in keys]
    clients = []
    for node in cluster.nodes:
        requests = post_requests(READ_PATH, node.port, bodies)
        phases: Phases = {
            f"n{n}": (split(requests, max(1, connections // n), 1), bench_checkin.EMPTY_READ)
            for n in NODE_COUNTS
            if n >= node.number
        }
        clients.append(LoadClients.start(node.port, phases, 1))
    return clients


def _round(
    cluster: Cluster,
    clients: list[LoadClients],
    procs: Processes,
    n: int,
    warmup: float,
    duration: float,
) -> tuple[list[PhaseResult], dict[str, float], float]:
    """Load on the first n nodes at once; their results, every group's CPU seconds, wall s."""

    def one(number: int) -> list[PhaseResult]:
        node = cluster.node(number)
        assert node.process is not None
        return clients[number - 1].run(f"n{n}", warmup, duration, node.process.pid)

    before, started = procs.cpu(), time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = [r for rs in pool.map(one, range(1, n + 1)) for r in rs]
    wall = time.perf_counter() - started
    after = procs.cpu()
    return results, {k: v - before.get(k, 0.0) for k, v in after.items()}, wall


def measure_checkin(back: Backends, args: argparse.Namespace) -> Report:
    """Part 1: check-in requests/s on 1, 2, 3 nodes and what every process spent."""
    settings = {"DISTRIBUTED_HOLD": "0", "ENROLL_SECRET": ENROLL_SECRET}
    with running(back.cluster(max(NODE_COUNTS), settings), back.errors) as cluster:
        print(f"check-in: enrolling {args.hosts:,} hosts on node 1 ...")
        started = time.perf_counter()
        keys = asyncio.run(enroll_all(cluster.node(1).url, args.hosts))
        print(f"  done in {time.perf_counter() - started:.1f} s")
        for node in cluster.nodes[1:]:
            offered = asyncio.run(answer_pending(node.url, keys))
            print(f"  node{node.number} offered queries to {offered:,} hosts; answered")
        procs = back.processes(cluster)
        clients = _load_clients(cluster, keys, args.connections)
        try:
            for number, client in enumerate(clients, 1):
                procs.add(f"loadgen{number}", client.clients[0][0].pid)
            # Unmeasured: every node looks each key up once (enrolled on node 1) and the
            # hosts' status changes are written, so the rounds see the steady state.
            _round(cluster, clients, procs, max(NODE_COUNTS), args.warmup, args.duration)
            time.sleep(args.warmup)
            totals = {n: Throughput() for n in NODE_COUNTS}
            for number in range(1, args.rounds + 1):
                line = []
                for n in NODE_COUNTS:
                    rate = totals[n].add_round(
                        *_round(cluster, clients, procs, n, args.warmup, args.duration)
                    )
                    line.append(f"{n} node(s) {format_number(rate)} req/s")
                print(f"round {number}: " + ", ".join(line))
        finally:
            for client in clients:
                client.close()
    return _checkin_report(args, totals)


def report_params(args: argparse.Namespace, names: str, **more: Any) -> dict[str, Any]:
    """The report parameters: the named options, the backend and `more`."""
    return {**{name: getattr(args, name) for name in names.split()}, **more} | {
        "backend": "postgresql+redis"
    }


def _checkin_report(args: argparse.Namespace, totals: Mapping[int, Throughput]) -> Report:
    report = Report(
        bench="cluster_checkin",
        baseline="1 node",
        params=report_params(
            args,
            "hosts connections rounds duration",
            failed_requests=sum(t.failed for t in totals.values()),
        ),
    )
    for n, t in totals.items():
        report.add(
            Measurement(
                name=f"{n} node" + ("s" if n > 1 else ""),
                value=t.rate,
                unit="req/s",
                latencies=summarize(t.latencies),
                extra={
                    "requests": t.completed,
                    "per_round": [round(r, 1) for r in t.per_round],
                    "cpu_busy": t.busy(),
                },
            )
        )
        nodes_cpu = sum(s for name, s in t.cpu.items() if name.startswith("node"))
        report.notes.append(
            f"{n} node(s): {format_number(t.rate)} req/s; CPU share of one core: "
            f"{busy_line(t.busy())}; nodes {nodes_cpu / max(t.completed, 1) * 1e6:.0f} us "
            "CPU per check-in"
        )
        if t.failed:
            report.notes.append(f"{n} node(s): {t.failed} failed answers; first: {t.first_error}")
    return report
