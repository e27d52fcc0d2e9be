"""The cluster benchmark's shared services and what its processes cost: PostgreSQL and Redis
started once for the whole run, clusters of `fleetwatch serve` nodes on them (each on a fresh
database), the error records of their logs, and the CPU and memory of every process involved
(nodes, PostgreSQL's postmaster and backends, Redis), read from /proc.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from tests.cluster.harness import Cluster
from tests.services import PostgresServer, RedisServer

from bench._http_load import cpu_seconds

_databases = itertools.count()


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(root: int, tree: Mapping[int, list[int]]) -> list[int]:
    """`root` and every process below it in `tree` (parent -> children)."""
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Processes:
    """Named groups of processes (a group counts its root's descendants too, for PostgreSQL's
    backends) whose CPU seconds and memory are read from /proc."""

    roots: dict[str, list[int]] = field(default_factory=dict)

    def add(self, name: str, pid: int | None) -> None:
        if pid is not None:
            self.roots.setdefault(name, []).append(pid)

    def _pids(self) -> dict[str, list[int]]:
        tree = _children()
        return {
            name: [p for root in roots for p in descendants(root, tree)]
            for name, roots in self.roots.items()
        }

    def cpu(self) -> dict[str, float]:
        """CPU seconds per group right now (processes that exited are no longer counted)."""
        return {
            name: sum(cpu_seconds(p) or 0.0 for p in pids) for name, pids in self._pids().items()
        }

    def rss(self) -> dict[str, int]:
        """Resident bytes per group right now."""
        return {name: sum(rss_bytes(p) for p in pids) for name, pids in self._pids().items()}


def busy(
    before: Mapping[str, float], after: Mapping[str, float], seconds: float
) -> dict[str, float]:
    """Per group, the share of one core it used between two `Processes.cpu` readings."""
    return {
        name: round(max(0.0, after[name] - before.get(name, 0.0)) / seconds, 3)
        for name in after
        if seconds > 0
    }


def busy_line(shares: Mapping[str, float]) -> str:
    """`node1 45%, node2 44%, postgresql 3%, ...` with the total of the groups."""
    total = sum(shares.values())
    parts = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    return f"{parts} (total {total:.2f} of 2 cores)" if os.cpu_count() == 2 else parts


@dataclass
class Backends:
    """PostgreSQL and Redis, started for the whole benchmark."""

    postgres: PostgresServer
    redis: RedisServer
    directory: Path
    #: Error records of every node that ran (reported with the figures).
    errors: list[str] = field(default_factory=list)

    def cluster(self, size: int, settings: Mapping[str, str]) -> Cluster:
        """N nodes (not started) on a fresh database and an emptied Redis."""
        self.redis.restart()  # empty: no campaign sets or leases of a previous cluster
        number = next(_databases)
        return Cluster(
            database_url=self.postgres.create_database(f"bench{number}"),
            redis_url=self.redis.url,
            directory=self.directory / f"cluster{number}",
            size=size,
            settings={"SEEN_FLUSH_INTERVAL": "2", "CLUSTER_LEASE_TTL": "3", **settings},
        )

    def processes(self, cluster: Cluster) -> Processes:
        """The cluster's nodes, PostgreSQL (postmaster and backends) and Redis."""
        procs = Processes()
        for node in cluster.nodes:
            procs.add(f"node{node.number}", node.process.pid if node.process else None)
        pid_file = self.postgres.directory / "data" / "postmaster.pid"
        procs.add("postgresql", int(pid_file.read_text().split()[0]))
        procs.add("redis", self.redis.process.pid if self.redis.process else None)
        return procs


@contextmanager
def backends() -> Iterator[Backends]:
    """Start PostgreSQL and Redis in a temp directory; stop them afterwards."""
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-cluster-") as tmp:
        postgres = PostgresServer.start()
        try:
            redis = RedisServer.start()
            try:
                yield Backends(postgres, redis, Path(tmp))
            finally:
                redis.stop()
        finally:
            postgres.stop()


@contextmanager
def running(cluster: Cluster, errors: list[str]) -> Iterator[Cluster]:
    """Start every node of `cluster`; stop them and add their error lines to `errors`."""
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        for node in cluster.nodes:
            found = node_errors(node.log_text())
            if found:
                print(f"  node{node.number} log: {len(found)} errors; first: {found[0]}")
                errors.extend(f"{cluster.size} node(s), node{node.number}: {e}" for e in found)


def node_errors(log: str) -> list[str]:
    """The error records of a node's JSON log: message and the exception's last line."""
    found = []
    for line in log.splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if "Traceback" in line or "ERROR" in line:
                found.append(line[:300])
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            # The verdict is the last line, but SQLAlchemy appends a link line after it.
            exc = [
                line
                for line in str(record.get("exc", "")).strip().splitlines()
                if not line.startswith("(Background on this error")
            ]
            found.append(f"{record.get('msg')}: {exc[-1] if exc else ''}"[:400])
    return found
