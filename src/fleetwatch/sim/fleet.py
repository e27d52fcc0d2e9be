"""Many simulated hosts in one asyncio process: the library API for tests and benchmarks.

    async with Fleet(url, "secret", hosts=20, seed=1, platforms="ubuntu=3,darwin=1") as fleet:
        await fleet.wait_enrolled(timeout=30)
        fleet.hosts[0].received_queries, fleet.hosts[0].results_sent, fleet.hosts[0].stats

Hosts share one SQLite database per OS release, one parsed copy of each config and nothing
else; each keeps its own connections (one held by the distributed long-poll).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from fleetwatch.sim.agent_config import ConfigCache
from fleetwatch.sim.churn import Churn
from fleetwatch.sim.engine import Engines
from fleetwatch.sim.flags import AgentFlags
from fleetwatch.sim.host import SimHost
from fleetwatch.sim.platforms import assign_platforms, parse_platforms
from fleetwatch.sim.profile import make_profile
from fleetwatch.sim.stats import FleetTotals
from fleetwatch.sim.transport import Server

log = logging.getLogger("fleetwatch.sim")

#: Sockets a host may hold: distributed, config and logger connections.
SOCKETS_PER_HOST = 3
_FD_RESERVE = 256


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class Fleet:
    """K simulated osquery hosts against one server."""

    def __init__(
        self,
        url: str,
        enroll_secret: str,
        hosts: int = 1,
        *,
        seed: int = 0,
        platforms: str | Mapping[str, int] | None = None,
        ca_file: Path | str | None = None,
        flags: AgentFlags | None = None,
        churn: Churn | None = None,
        start_period: float = 0.0,
        history: int = 100,
        first_index: int = 0,
    ) -> None:
        if hosts < 0:
            raise ValueError("hosts must not be negative")
        self.server = Server.from_url(url, ca_file)
        self.enroll_secret = enroll_secret
        self.seed = seed
        weights = parse_platforms(platforms) if not isinstance(platforms, Mapping) else platforms
        self.weights = dict(weights)
        self.flags = flags or AgentFlags()
        self.churn = churn or Churn()
        self.start_period = start_period
        self.engines = Engines()
        self.configs = ConfigCache()
        self.open_file_limit = raise_open_file_limit(SOCKETS_PER_HOST * hosts + _FD_RESERVE)
        # With too few descriptors for three kept-alive sockets per host, only the
        # distributed one stays open between requests.
        aux_keepalive = (
            60.0 if SOCKETS_PER_HOST * hosts + _FD_RESERVE <= self.open_file_limit else 0.0
        )
        now = time.time()
        self.hosts: list[SimHost] = [
            SimHost(
                make_profile(seed, first_index + i, platform, now),
                self.server,
                enroll_secret,
                flags=self.flags,
                churn=self.churn,
                engines=self.engines,
                configs=self.configs,
                history=history,
                aux_keepalive=aux_keepalive,
            )
            for i, platform in enumerate(assign_platforms(self.weights, hosts))
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = 0.0

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start every host, spread evenly over `start_period` seconds."""
        self.started_at = time.monotonic()
        count = len(self.hosts)
        for i, host in enumerate(self.hosts):
            delay = self.start_period * i / count if count else 0.0
            self._tasks.append(asyncio.create_task(self._run(host, delay)))

    async def _run(self, host: SimHost, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await host.run()

    async def stop(self) -> None:
        """Cancel every host and close its connections."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for host in self.hosts:
            host.close()
        self.engines.close()

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float, what: str = "condition"
    ) -> None:
        """Poll `predicate` until it holds; TimeoutError naming `what` after `timeout` s."""
        deadline = time.monotonic() + timeout
        # A predicate over every host costs milliseconds at 10,000 hosts: poll a big fleet
        # less often, so that waiting does not take a tenth of the simulator's CPU.
        pause = min(0.5, max(0.05, len(self.hosts) / 20_000))
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached within {timeout:g} s: {self.totals()}")
            await asyncio.sleep(pause)

    async def wait_enrolled(self, timeout: float = 60.0, count: int | None = None) -> None:
        """Wait until `count` hosts (default all) hold a node key."""
        target = len(self.hosts) if count is None else count
        await self.wait_until(
            lambda: sum(1 for h in self.hosts if h.enrolled) >= target,
            timeout,
            f"{target} hosts enrolled",
        )

    async def wait_configured(self, timeout: float = 60.0) -> None:
        """Wait until every host has loaded a config."""
        await self.wait_until(
            lambda: all(h.config is not None for h in self.hosts), timeout, "configs loaded"
        )

    def totals(self) -> FleetTotals:
        """Sums over the hosts right now."""
        totals = FleetTotals(hosts=len(self.hosts))
        for host in self.hosts:
            s = host.stats
            totals.enrolled += host.enrolled
            totals.online += host.online
            totals.requests += s.total_requests
            totals.errors += s.total_errors
            totals.enrollments += s.enrollments
            totals.node_invalid += s.node_invalid
            totals.queries_answered += s.queries_answered
            totals.result_lines_sent += s.result_lines_sent
            totals.loop_crashes += s.loop_crashes
            totals.by_kind.update(s.requests)
            totals.errors_by_kind.update(s.errors)
            if s.last_error:
                totals.last_error = s.last_error
        return totals
