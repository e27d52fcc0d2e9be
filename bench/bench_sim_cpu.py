"""Simulator CPU per host per check-in, against bare HTTP request loops in the same run.

Is the simulated fleet cheap enough that, in a benchmark, the server is the bottleneck and
not the simulator? The figures, all CPU time of this (the simulator's) process:

- `httpx bare loop` (baseline): the same number of POSTs as the fleet's check-ins, made with
  one httpx.AsyncClient (C at a time) to a constant endpoint that answers `{"queries":{}}`;
- `sim transport loop`: the same requests with the simulator's own HTTP client;
- `fleet vs constant server`: N simulated hosts checking in against that constant endpoint
  (it answers enroll, config, log and distributed read/write at once);
- `fleet vs fleetwatch server` (unless --no-server): N hosts against the real server
  (`fleetwatch serve`, SQLite, long-poll hold H, `distributed_interval` I pushed in the config),
  with the server's own CPU use beside it.

Each fleet is measured over --seconds of steady state after every host enrolled and a
--warmup; CPU per check-in = process CPU time / distributed reads. The servers run in their
own processes. Also printed: the simulator's memory per host and its share of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._harness import Measurement, Report

SECRET = "bench-sim-secret"
CONSTANT_READ = b'{"queries":{}}'


# --- servers (child processes) ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _constant_server(port: int, distributed_interval: float) -> None:
    """A minimal agent-API server answering every request at once with a fixed body."""
    import httptools
    import uvloop

    from fleetwatch.sim.fleet import raise_open_file_limit

    raise_open_file_limit(1 << 20)
    config = (
        b'{"options":{"distributed_interval":%d,"logger_tls_period":10},"node_invalid":false}'
        % int(distributed_interval)
    )
    replies = {
        b"/api/v1/osquery/enroll": b'{"node_key":"bench-key"}',
        b"/api/v1/osquery/config": config,
        b"/api/v1/osquery/distributed/read": CONSTANT_READ,
    }

    class Handler(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.transport: asyncio.WriteTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                assert self.transport is not None
                self.transport.close()

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_message_complete(self) -> None:
            body = replies.get(self.url, b"{}")
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(body)
                + body
            )
            self.url = b""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Handler, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    uvloop.run(main())


def _fleetwatch_server(port: int, data_dir: str, hold: float, interval: int) -> None:
    import uvicorn

    from fleetwatch.config import Settings
    from fleetwatch.server import uvicorn_config
    from fleetwatch.sim.fleet import raise_open_file_limit

    raise_open_file_limit(1 << 20)
    settings = Settings(
        host="127.0.0.1",
        port=port,
        data_dir=Path(data_dir),
        enroll_secret=SECRET,
        distributed_hold=hold,
        distributed_interval=interval,
        log_level="warning",
    )
    config = uvicorn_config(settings)
    config.backlog = 4096
    uvicorn.Server(config).run()


def _stop(process: Any) -> None:
    """SIGTERM, then SIGKILL: uvicorn's graceful shutdown can outlast thousands of sockets."""
    process.terminate()
    process.join(15)
    if process.is_alive():
        process.kill()
        process.join(15)


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- measurements ---------------------------------------------------------------------------


@dataclass
class FleetRun:
    checkins: int
    requests: int
    cpu: float
    elapsed: float
    server_cpu: float
    rss_per_host_kib: float
    enroll_seconds: float
    errors: int
    enrolled: int


async def _measure_fleet(
    url: str, hosts: int, args: argparse.Namespace, server_pid: int
) -> FleetRun:
    from fleetwatch.sim import AgentFlags, Fleet

    rss_before = _rss_mib()
    flags = AgentFlags(distributed_interval=args.interval)
    fleet = Fleet(url, SECRET, hosts, seed=1, flags=flags, start_period=hosts / args.enroll_rate)
    started = time.monotonic()
    async with fleet:
        try:
            await fleet.wait_enrolled(timeout=max(120.0, 3 * hosts / args.enroll_rate))
        except TimeoutError:
            pass  # measured anyway; the note says how many enrolled
        enroll_seconds = time.monotonic() - started
        enrolled = fleet.totals().enrolled
        await asyncio.sleep(args.warmup)
        before, cpu0, srv0, t0 = (
            fleet.totals(),
            time.process_time(),
            _proc_cpu(server_pid),
            (time.monotonic()),
        )
        await asyncio.sleep(args.seconds)
        after, cpu1, srv1, t1 = (
            fleet.totals(),
            time.process_time(),
            _proc_cpu(server_pid),
            (time.monotonic()),
        )
        rss = _rss_mib() - rss_before
    return FleetRun(
        checkins=after.by_kind["distributed_read"] - before.by_kind["distributed_read"],
        requests=after.requests - before.requests,
        cpu=cpu1 - cpu0,
        elapsed=t1 - t0,
        server_cpu=srv1 - srv0,
        rss_per_host_kib=rss * 1024 / hosts,
        enroll_seconds=enroll_seconds,
        errors=after.errors - before.errors,
        enrolled=enrolled,
    )


async def _httpx_loop(url: str, count: int, concurrency: int) -> float:
    """CPU seconds for `count` POSTs with httpx, `concurrency` at a time."""
    body = b'{"node_key":"bench-key"}'
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=16) as client:
        per_worker = max(1, count // concurrency)

        async def worker() -> None:
            for _ in range(per_worker):
                reply = await client.post(
                    "/api/v1/osquery/distributed/read",
                    content=body,
                    headers={"Authorization": "NodeKey bench-key"},
                )
                reply.json()

        await worker()  # warm up the connection pool
        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (time.process_time() - cpu) / (per_worker * concurrency) * count


async def _transport_loop(url: str, count: int, concurrency: int) -> float:
    """CPU seconds for `count` POSTs with the simulator's client, `concurrency` at a time."""
    import orjson

    from fleetwatch.sim.protocol import interpret
    from fleetwatch.sim.transport import Connection, Server

    server = Server.from_url(url)
    connections = [Connection(server) for _ in range(concurrency)]
    per_worker = max(1, count // concurrency)

    async def worker(conn: Connection) -> None:
        for _ in range(per_worker):
            reply = await conn.post(
                "/api/v1/osquery/distributed/read",
                orjson.dumps({"node_key": "bench-key"}),
                headers=(("Authorization", "NodeKey bench-key"),),
            )
            interpret(reply.body)

    await worker(connections[0])
    cpu = time.process_time()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.process_time() - cpu
    for conn in connections:
        conn.close()
    return elapsed / (per_worker * concurrency) * count


async def _run(args: argparse.Namespace, report: Report) -> None:
    ctx = mp.get_context("spawn")
    if not args.server_only:
        await _run_constant(args, report, ctx)
    if not args.no_server:
        await _run_server(args, report, ctx)


async def _run_constant(args: argparse.Namespace, report: Report, ctx: Any) -> None:
    port = _free_port()
    constant = ctx.Process(target=_constant_server, args=(port, args.interval), daemon=True)
    constant.start()
    try:
        _wait_port(port)
        url = f"http://127.0.0.1:{port}"
        run = await _measure_fleet(url, args.hosts, args, constant.pid or 0)
        checkins = max(1, run.checkins)
        # Per-request figures: a bounded sample is enough (httpx alone costs ms per request).
        sample = min(checkins, args.baseline_requests)
        httpx_cpu = await _httpx_loop(url, sample, args.concurrency) * checkins / sample
        transport_cpu = await _transport_loop(url, sample, args.concurrency) * checkins / sample
    finally:
        _stop(constant)
    us = 1e6 / checkins
    report.add(Measurement("httpx bare loop", httpx_cpu * us, "us CPU/request", False))
    report.add(Measurement("sim transport loop", transport_cpu * us, "us CPU/request", False))
    report.add(_fleet_measurement("fleet vs constant server", run))
    report.notes.append(_describe("constant server", run, args.hosts))


async def _run_server(args: argparse.Namespace, report: Report, ctx: Any) -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-sim-") as data_dir:
        server = ctx.Process(
            target=_fleetwatch_server,
            args=(port, data_dir, args.hold, int(args.interval_pushed)),
            daemon=True,
        )
        server.start()
        try:
            _wait_port(port)
            real = await _measure_fleet(
                f"http://127.0.0.1:{port}", args.hosts, args, server.pid or 0
            )
        finally:
            _stop(server)
    if not report.measurements:
        report.baseline = "fleet vs fleetwatch server"
    report.add(_fleet_measurement("fleet vs fleetwatch server", real))
    report.notes.append(_describe("fleetwatch server", real, args.hosts))


def _fleet_measurement(name: str, run: FleetRun) -> Measurement:
    checkins = max(1, run.checkins)
    return Measurement(
        name,
        run.cpu / checkins * 1e6,
        "us CPU/check-in",
        False,
        extra={
            "checkins": run.checkins,
            "requests": run.requests,
            "checkins_per_s": run.checkins / run.elapsed,
            "sim_cpu_share": run.cpu / run.elapsed,
            "server_cpu_share": run.server_cpu / run.elapsed,
            "rss_kib_per_host": run.rss_per_host_kib,
            "enroll_seconds": run.enroll_seconds,
            "enrolled": run.enrolled,
            "errors": run.errors,
        },
    )


def _describe(what: str, run: FleetRun, hosts: int) -> str:
    return (
        f"{what}: {run.enrolled:,} of {hosts:,} hosts enrolled in {run.enroll_seconds:.1f} s; "
        f"{run.checkins / run.elapsed:,.0f} check-ins/s, {run.requests / run.elapsed:,.0f} "
        f"requests/s over {run.elapsed:.0f} s; simulator CPU {run.cpu / run.elapsed:.0%} of a "
        f"core, server CPU {run.server_cpu / run.elapsed:.0%}; "
        f"simulator memory {run.rss_per_host_kib:.0f} KiB/host; {run.errors} errors"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench sim_cpu", description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="steady-state window")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="distributed_interval against the constant server",
    )
    parser.add_argument(
        "--interval-pushed",
        type=float,
        default=1.0,
        help="distributed_interval the fleetwatch server pushes",
    )
    parser.add_argument("--hold", type=float, default=10.0, help="fleetwatch distributed hold")
    parser.add_argument("--enroll-rate", type=float, default=500.0, help="host starts per second")
    parser.add_argument("--concurrency", type=int, default=50, help="baseline loops' connections")
    parser.add_argument(
        "--baseline-requests", type=int, default=5000, help="requests per baseline loop (max)"
    )
    parser.add_argument("--no-server", action="store_true", help="skip the fleetwatch server")
    parser.add_argument(
        "--server-only", action="store_true", help="only the fleet vs the fleetwatch server"
    )
    args = parser.parse_args(argv)
    report = Report(
        bench="sim_cpu",
        baseline="httpx bare loop",
        params={k: v for k, v in vars(args).items()},
    )
    import uvloop

    uvloop.run(_run(args, report))
    report.print()
    report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
