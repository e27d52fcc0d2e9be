"""bench cluster: its /proc and log helpers, and the quick mode end to end (real PostgreSQL,
Redis and 1-3 `fleetwatch serve` nodes, a simulated fleet, results written to a temp dir)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
from bench._cluster_backends import Processes, busy, descendants, node_errors
from bench.bench_cluster import main


def test_descendants_walks_the_whole_tree() -> None:
    tree = {1: [2, 3], 3: [4], 4: [5], 9: [10]}
    assert sorted(descendants(1, tree)) == [1, 2, 3, 4, 5]
    assert descendants(7, tree) == [7]


def test_processes_reads_this_process_from_proc() -> None:
    procs = Processes()
    procs.add("me", os.getpid())
    procs.add("nothing", None)
    assert set(procs.cpu()) == {"me"}
    assert procs.cpu()["me"] > 0
    assert procs.rss()["me"] > 0


def test_busy_is_the_share_of_one_core() -> None:
    assert busy({"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 2.5, "c": 1.0}, 2.0) == {
        "a": 0.5,
        "b": 0.25,
        "c": 0.5,
    }


def test_node_errors_keeps_the_error_records_and_the_exception_verdict() -> None:
    log = "\n".join(
        [
            orjson.dumps({"level": "info", "msg": "started"}).decode(),
            orjson.dumps(
                {
                    "level": "error",
                    "msg": "flushing seen times failed",
                    "exc": "Traceback (most recent call last):\n  ...\nDeadlockDetectedError: x"
                    "\n(Background on this error at: https://sqlalche.me/e/21/dbapi)",
                }
            ).decode(),
            "Traceback (most recent call last):",
            "plain line",
        ]
    )
    assert node_errors(log) == [
        "flushing seen times failed: DeadlockDetectedError: x",
        "Traceback (most recent call last):",
    ]


def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    assert main(["--quick", "--results", str(tmp_path)]) == 0

    def latest(name: str) -> Any:
        return json.loads((tmp_path / f"{name}.latest.json").read_text())

    checkin = latest("cluster_checkin")
    assert checkin["params"]["failed_requests"] == 0
    rates = checkin["measurements"]
    assert [m["name"] for m in rates] == ["1 node", "2 nodes", "3 nodes"]
    for m in rates:
        assert m["value"] > 0
        assert {"node1", "postgresql", "redis", "loadgen1"} <= set(m["cpu_busy"])
    latency = latest("cluster_latency")["measurements"]
    scale = latest("cluster_scale")["measurements"]
    for m in [*latency, *scale]:
        assert m["settled"] is True
        assert m["missing_results"] == 0
        assert m["streamed"]["count"] == sum(m["online"]) > 0
