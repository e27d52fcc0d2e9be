"""The server and the simulated fleet (fleetwatch.sim) as child processes, for the live query
latency benchmarks: `serve` runs `fleetwatch serve`, `FleetProcess` runs N simulated hosts
split over one or more server URLs and reports their status every second.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Sequence
from typing import Any

from bench._latency import (
    Mode,
)

ENROLL_SECRET = "bench-live-latency-secret"
CAMPAIGN_PREFIX = "fleet_distributed_query_"


def _serve(settings_kwargs: dict[str, Any], log_path: str, fds: int) -> None:
    """Child process: `fleetwatch serve` until terminated."""
    import logging

    import uvicorn

    from fleetwatch.config import Settings
    from fleetwatch.server import uvicorn_config
    from fleetwatch.sim.fleet import raise_open_file_limit

    log_file = open(log_path, "a", encoding="utf-8")  # open for the process's life
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    logging.basicConfig(stream=log_file)
    raise_open_file_limit(fds)
    uvicorn.Server(uvicorn_config(Settings(**settings_kwargs))).run()


def _fleet_status(fleet: Any, now: float) -> dict[str, Any]:
    """What the parent needs to know about the fleet right now."""
    totals = fleet.totals()
    answered = 0
    last_other = 0.0
    for host in fleet.hosts:
        answered += host.stats.queries_answered > 0
        for received in reversed(host.received_queries):
            if not received.name.startswith(CAMPAIGN_PREFIX):
                last_other = max(last_other, received.received_at)
                break
    return {
        "time": now,
        "hosts": totals.hosts,
        "enrolled": totals.enrolled,
        "answered": answered,
        "other_query_age": now - last_other if last_other else math.inf,
        "requests": dict(totals.by_kind),
        "errors": dict(totals.errors_by_kind),
        "last_error": totals.last_error,
        "loop_crashes": totals.loop_crashes,
    }


def merge_statuses(statuses: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One status for several fleets (one per cluster node) in one process."""
    requests: dict[str, int] = {}
    errors: dict[str, int] = {}
    for status in statuses:
        for key, into in (("requests", requests), ("errors", errors)):
            for kind, count in status[key].items():
                into[kind] = into.get(kind, 0) + count
    return {
        "time": max(s["time"] for s in statuses),
        "hosts": sum(s["hosts"] for s in statuses),
        "enrolled": sum(s["enrolled"] for s in statuses),
        "answered": sum(s["answered"] for s in statuses),
        "other_query_age": min(s["other_query_age"] for s in statuses),
        "requests": requests,
        "errors": errors,
        "last_error": next((s["last_error"] for s in statuses if s["last_error"]), ""),
        "loop_crashes": sum(s["loop_crashes"] for s in statuses),
    }


def _run_fleet(
    urls: Sequence[str],
    hosts: int,
    start_period: float,
    seed: int,
    status: Any,
    stop: Any,
    log_path: str,
    first_index: int = 0,
) -> None:
    """Child process: N simulated hosts (numbered from `first_index`), split evenly over the
    server `urls` (cluster nodes); a status dict on `status` every second."""
    import logging

    from fleetwatch.sim.fleet import SOCKETS_PER_HOST, Fleet, raise_open_file_limit

    log_file = open(log_path, "a", encoding="utf-8")  # open for the process's life
    os.dup2(log_file.fileno(), 2)
    logging.basicConfig(stream=log_file, level=logging.WARNING)
    # The limit is the process's: each Fleet would raise it for its own share of the hosts.
    raise_open_file_limit(SOCKETS_PER_HOST * hosts + 1024)

    async def main() -> None:
        bounds = [hosts * i // len(urls) for i in range(len(urls) + 1)]
        fleets = [
            Fleet(
                url,
                ENROLL_SECRET,
                hosts=bounds[i + 1] - bounds[i],
                seed=seed,
                start_period=start_period,
                first_index=first_index + bounds[i],
            )
            for i, url in enumerate(urls)
        ]
        for fleet in fleets:
            await fleet.start()
        try:
            while not stop.is_set():
                await asyncio.sleep(1.0)
                now = time.time()
                status.put(merge_statuses([_fleet_status(f, now) for f in fleets]))
        finally:
            for fleet in fleets:
                await fleet.stop()

    asyncio.run(main())


class FleetProcess:
    """The simulated fleet's process and its latest status."""

    def __init__(self, url: str | Sequence[str], args: argparse.Namespace, log_path: str) -> None:
        ctx = mp.get_context("spawn")
        self.status_queue: Any = ctx.Queue()
        self.stop_event: Any = ctx.Event()
        self.latest: dict[str, Any] = {}
        self.proc = ctx.Process(
            target=_run_fleet,
            args=(
                [url] if isinstance(url, str) else list(url),
                args.hosts,
                args.hosts / args.start_rate,
                args.seed,
                self.status_queue,
                self.stop_event,
                log_path,
                getattr(args, "first_index", 0),
            ),
            daemon=True,
        )
        self.proc.start()

    def poll(self, wait: float = 0.0) -> dict[str, Any]:
        """The newest status (waiting up to `wait` s for one)."""
        try:
            self.latest = self.status_queue.get(timeout=wait) if wait else self.latest
            while True:
                self.latest = self.status_queue.get_nowait()
        except queue.Empty:
            pass
        if not self.proc.is_alive():
            raise RuntimeError("the simulated fleet process died; see its log")
        return self.latest

    async def settle(self, mode: Mode, timeout: float) -> float:
        """Wait until every host enrolled and answered, and nothing but campaigns was
        offered for a whole cycle; returns the seconds it took."""
        started = time.monotonic()
        quiet = mode.cycle + 5
        last_print = 0.0
        while True:
            status = await asyncio.to_thread(self.poll, 2.0)
            if not status:
                continue
            hosts = status["hosts"]
            done = (
                status["enrolled"] == hosts
                and status["answered"] == hosts
                and status["other_query_age"] >= quiet
            )
            elapsed = time.monotonic() - started
            if done:
                return elapsed
            if elapsed - last_print >= 15:
                last_print = elapsed
                age = status["other_query_age"]
                print(
                    f"  settling {elapsed:.0f} s: {status['enrolled']:,}/{hosts:,} enrolled, "
                    f"{status['answered']:,} answered, last detail/label query "
                    f"{'never' if math.isinf(age) else f'{age:.0f} s ago'}"
                )
            if elapsed > timeout:
                raise TimeoutError(f"the fleet did not settle within {timeout:g} s: {status}")

    def close(self) -> None:
        self.stop_event.set()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
