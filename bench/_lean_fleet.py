"""The server and the lean hosts of `bench fleet`, `bench soak` and `bench results`: the
`fleetwatch serve` command line, the lean hosts' process, signing in, waiting for the fleet
to settle, one campaign on every host timed as it streams, and user API calls while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench._latency import SseParser
from bench._lean_agents import FleetConfig, agent_process
from bench._lean_wire import LIVE_PREFIX
from bench._processes import CpuWindow

ENROLL_SECRET = "bench-lean-fleet-secret"
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "Bench-lean-fleet-1!"
CAMPAIGN_SQL = "SELECT hostname, uuid FROM system_info"


def serve_command(args: argparse.Namespace, port: int, data_dir: Path) -> list[str]:
    """The `fleetwatch serve` command line of the run."""
    command = [
        sys.executable,
        "-m",
        "fleetwatch",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--enroll-secret",
        ENROLL_SECRET,
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
        "--distributed-hold",
        f"{args.hold:g}",
        "--distributed-interval",
        str(args.interval),
        "--log-level",
        "warning",
        "--log-format",
        "text",
    ]
    if args.database_url:
        command += ["--database-url", args.database_url]
    if getattr(args, "redis_url", None):
        command += ["--redis-url", args.redis_url]
    if getattr(args, "enroll_failure_limit", None) is not None:
        command += ["--enroll-failure-limit", str(args.enroll_failure_limit)]
    if getattr(args, "workers", 1) > 1:
        command += ["--workers", str(args.workers)]
    return command


def shown(command: list[str]) -> str:
    """A command line as printed and reported: the admin password hidden."""
    return shlex.join(command).replace(ADMIN_PASSWORD, "***")


class Agents:
    """The lean hosts' process and its command pipe."""

    def __init__(self, port: int, fail_every: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.lock = threading.Lock()
        self.proc = ctx.Process(
            target=agent_process,
            args=(child, FleetConfig(port, ENROLL_SECRET, fail_every)),
            daemon=True,
        )
        self.proc.start()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def ask(self, *command: Any, timeout: float = 120) -> Any:
        with self.lock:
            self.pipe.send(command)
            if not self.pipe.poll(timeout):
                raise TimeoutError(f"the lean hosts did not answer {command[0]!r}")
            return self.pipe.recv()

    def __enter__(self) -> Agents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the lean hosts (killed if they do not end within 10 s); again is a no-op."""
        if not self.proc.is_alive():
            return
        try:
            self.ask("stop", timeout=30)
        except (OSError, EOFError, TimeoutError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


class Prober(threading.Thread):
    """User API calls while the fleet runs, timed per phase (its own thread and client)."""

    def __init__(
        self, url: str, authorization: str, interval: float, host_ids: Sequence[int]
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.authorization, self.interval = url, authorization, interval
        self.host_ids = list(host_ids)
        self.phase = ""
        self.samples: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": self.authorization}
        rng = random.Random(7)
        next_post = time.monotonic()
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            while not self.stopping.wait(self.interval):
                phase = self.phase
                if not phase:
                    continue
                self._timed(f"GET /me, {phase}", lambda: client.get("/api/v1/fleet/me"))
                if time.monotonic() >= next_post and self.host_ids:
                    next_post = time.monotonic() + 1.0
                    body = {
                        "query": CAMPAIGN_SQL,
                        "selected": {"hosts": [rng.choice(self.host_ids)]},
                        "timeout": 10,
                    }
                    self._timed(
                        f"POST /queries/run (1 host), {phase}",
                        lambda body=body: client.post("/api/v1/fleet/queries/run", json=body),
                    )

    def _timed(self, name: str, call: Any) -> None:
        started = time.perf_counter()
        try:
            answer = call()
        except httpx.HTTPError as exc:
            self.failures.append(f"{name}: {exc!r}")
            return
        elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            self.failures.append(f"{name}: {answer.status_code} {answer.text[:200]}")
            return
        self.samples.setdefault(name, []).append(elapsed)


@dataclass
class Round:
    """One campaign on all hosts: latencies in seconds from just before its POST."""

    campaign_id: int
    online: int
    posted: float
    written: list[float] = field(default_factory=list)
    streamed: list[float] = field(default_factory=list)
    status: str = "?"
    wall: float = 0.0
    server_cpu: float = 0.0
    agents_cpu: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.streamed)


async def run_campaign(
    client: httpx.AsyncClient, agents: Agents, server_pid: int, args: argparse.Namespace
) -> Round:
    cpu = CpuWindow(server_pid, agents.pid)
    started = time.time()
    answer = await client.post(
        "/api/v1/fleet/queries/run",
        json={
            "query": CAMPAIGN_SQL,
            "targets": [{"type": "all"}],
            "timeout": args.campaign_timeout,
            "queue_offline": getattr(args, "queue_offline", False),
        },
    )
    posted = time.time() - started
    if answer.status_code != 200:
        raise RuntimeError(f"campaign not created: {answer.status_code} {answer.text}")
    body = answer.json()
    run = Round(body["campaign_id"], body["campaign"]["totals"]["online"], posted)
    parser = SseParser()
    seen: set[int] = set()
    async with client.stream(
        "GET", f"/api/v1/fleet/campaigns/{run.campaign_id}/events", timeout=None
    ) as events:
        async for line in events.aiter_lines():
            event = parser.feed(line)
            if event is None:
                continue
            kind, data = event
            now = time.time()
            if kind == "result":
                result = orjson.loads(data)["data"]
                if result["host_id"] not in seen:
                    seen.add(result["host_id"])
                    run.streamed.append(now - started)
                if len(seen) >= run.online:
                    run.status = "all answered"
                    break
            elif kind == "status" and orjson.loads(data)["data"]["status"] != "running":
                run.status = orjson.loads(data)["data"]["status"]
                break
            elif kind == "error":
                raise RuntimeError(f"campaign stream error: {data}")
    # The round trip ends with each host's next read arriving (held again).
    await asyncio.sleep(args.interval + 0.5)
    run.wall = time.time() - started
    run.server_cpu, run.agents_cpu = cpu.spent()
    answers = agents.ask("answers", f"{LIVE_PREFIX}{run.campaign_id}")
    run.written = sorted(replied - started for _, _, replied in answers if replied)
    return run


@asynccontextmanager
async def admin_client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the server at `url`, signed in as the admin (timeout 120 s)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as anonymous:
        token = await login(anonymous)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        yield client


async def login(client: httpx.AsyncClient) -> str:
    answer = await client.post(
        "/api/v1/fleet/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def settle(agents: Agents, args: argparse.Namespace) -> float:
    """Wait until every host enrolled, answered its details and nothing else was offered."""
    quiet = max(12.0, args.hold + args.interval + 2)
    started = time.monotonic()
    last_print = 0.0
    timeout = args.hosts / args.start_rate + args.settle_timeout
    while True:
        time.sleep(1.0)
        status = agents.ask("status")
        elapsed = time.monotonic() - started
        age = status["other_query_age"]
        if (
            status["enrolled"] == args.hosts
            and status["details_done"] == args.hosts
            and age is not None
            and age >= quiet
        ):
            return elapsed
        if elapsed - last_print >= 10:
            last_print = elapsed
            print(
                f"  settling {elapsed:.0f} s: {status['connected']:,} connected, "
                f"{status['enrolled']:,} enrolled, {status['details_done']:,} answered details"
                f"; errors {status['counts'].get('errors', 0)}",
                flush=True,
            )
        if elapsed > timeout:
            raise TimeoutError(f"the fleet did not settle in {timeout:g} s: {status}")


def wait_enrolled(agents: Agents, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while agents.ask("status")["enrolled"] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count:,} hosts did not enroll in {timeout:g} s")
        time.sleep(0.5)
    print(f"  ramp: {count:,} enrolled", flush=True)


async def reenroll_check(
    client: httpx.AsyncClient, agents: Agents, args: argparse.Namespace
) -> float:
    """Delete the first host; it must get node_invalid and enroll again (seconds it took)."""
    hosts = (await client.get("/api/v1/fleet/hosts", params={"per_page": 1})).json()["hosts"]
    before = agents.ask("status")["counts"].get("reenrolled", 0)
    started = time.monotonic()
    (await client.delete(f"/api/v1/fleet/hosts/{hosts[0]['id']}")).raise_for_status()
    deadline = started + args.hold + args.interval + 30
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if agents.ask("status")["counts"].get("reenrolled", 0) > before:
            return time.monotonic() - started
    raise TimeoutError("the deleted host did not enroll again (node_invalid not honoured?)")


async def host_ids(client: httpx.AsyncClient, limit: int) -> list[int]:
    answer = await client.get("/api/v1/fleet/hosts", params={"per_page": min(limit, 500)})
    return [int(h["id"]) for h in answer.json()["hosts"]]
