"""Policies: added check-in cost (against no policies, same run), answer-to-webhook latency.

The server runs in its own process exactly as `fleetwatch serve` runs it (SQLite in a temp
directory, `--distributed-hold 0` so reads are answered at once). N hosts enroll and answer
their detail queries. Then, in rounds, every host checks in as osquery does: a
distributed/read, and a distributed/write when it was given queries. A round's check-ins
are spread evenly over 90 % of `--interval` (a fleet's steady rate, not a burst; a server
that cannot keep up falls behind), and the next round starts `--interval` seconds after it
began, so each host is due again.

- `no policies`: the rounds before any policy exists (reads come back empty, no write);
- `P policies`: after P policies with `interval` seconds are created (and one unmeasured
  round has stored every host's first answers), each check-in is a read giving P queries
  and a write of P answers (unchanged answers write nothing to the index).

The figure is the server process's CPU time (user + system, from /proc) per check-in, so the
client's own cost does not count, less the server's idle background CPU rate (measured for
`--idle` seconds before each phase) over the phase's rounds; the ratio is `P policies` over
`no policies`.

Latency: a webhook on the first policy posts to a receiver in this process on 127.0.0.1;
in further rounds `--flips` hosts change their answer to it (fail, then pass, ...). The
latency of an event is from just before its host's distributed/write is sent to the moment
the receiver has read the event; p50/p95/p99 are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench._checkin_server import (
    READ_PATH,
    enroll_all,
    served,
)
from bench._harness import Measurement, Report, percentile, summarize
from bench._processes import free_port

WRITE_PATH = "/api/v1/osquery/distributed/write"
PREFIX = "fleet_policy_query_"
ADMIN = ("bench-admin@example.com", "bench-admin-password-1")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def answer_rows(host: int, name: str, flipped: dict[int, bool]) -> list[dict[str, str]]:
    """Rows of a host's answer to a policy: stable per (host, policy), except a flipped
    host's answer to the first policy (`flipped[host]` True: failing)."""
    policy = int(name[len(PREFIX) :]) if name.startswith(PREFIX) else -1
    if host in flipped and policy == 1:
        return [] if flipped[host] else [{"1": "1"}]
    return [] if (host + policy) % 4 == 0 else [{"1": "1"}]


class Fleet:
    """The enrolled hosts' node keys and a client checking them in."""

    def __init__(self, url: str, keys: list[str], concurrency: int) -> None:
        self.url = url
        self.keys = keys
        self.concurrency = concurrency
        self.flipped: dict[int, bool] = {}
        self.sent_at: dict[str, float] = {}
        self.queries_seen = 0
        self.failures = 0

    async def checkin(self, client: httpx.AsyncClient, i: int) -> None:
        key = self.keys[i]
        reply = await client.post(READ_PATH, content=orjson.dumps({"node_key": key}))
        if reply.status_code != 200:
            self.failures += 1
            return
        queries: dict[str, str] = reply.json().get("queries", {})
        if not queries:
            return
        self.queries_seen += len(queries)
        body = {
            "node_key": key,
            "queries": {n: answer_rows(i, n, self.flipped) for n in queries},
            "statuses": {n: 0 for n in queries},
        }
        if i in self.flipped:
            self.sent_at[f"bench-{i:05d}"] = time.perf_counter()
        wrote = await client.post(WRITE_PATH, content=orjson.dumps(body))
        if wrote.status_code != 200:
            self.failures += 1

    async def round(self, spread: float) -> int:
        """Every host checks in once, the starts spread evenly over `spread` seconds (as a
        fleet's check-ins are); returns the number of check-ins."""
        limits = httpx.Limits(max_connections=self.concurrency)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(
            base_url=self.url, limits=limits, timeout=60, headers=headers
        ) as client:
            gate = asyncio.Semaphore(self.concurrency)
            start = time.perf_counter()
            step = spread / len(self.keys)

            async def one(i: int) -> None:
                await asyncio.sleep(max(0.0, start + i * step - time.perf_counter()))
                async with gate:
                    await self.checkin(client, i)

            await asyncio.gather(*(one(i) for i in range(len(self.keys))))
        return len(self.keys)


class Receiver:
    """A minimal HTTP server on 127.0.0.1 that records when each policy event arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.events.append((time.perf_counter(), orjson.loads(body)))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


async def _run(args: argparse.Namespace, url: str, pid: int, report: Report) -> None:
    print(f"enrolling {args.hosts} hosts and answering their detail queries ...")
    keys = await enroll_all(url, args.hosts)
    fleet = Fleet(url, keys, args.concurrency)
    spread = args.interval * 0.9  # a round's check-ins spread over most of the interval
    await fleet.round(spread)  # unmeasured: anything left from enrollment is answered

    async def idle_rate() -> float:
        """The server's background CPU per second with no requests (seen-time flushes,
        status transitions): taken out of each phase, which the client may stretch."""
        before, started = _cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(args.idle)
        return (_cpu_seconds(pid) - before) / (time.perf_counter() - started)

    async def measured(rounds: int) -> tuple[float, int, float]:
        idle = await idle_rate()
        cpu = 0.0
        checkins = 0
        started = time.perf_counter()
        for _ in range(rounds):
            begin = time.perf_counter()
            before = _cpu_seconds(pid)
            checkins += await fleet.round(spread)
            cpu += _cpu_seconds(pid) - before
            cpu -= idle * (time.perf_counter() - begin)
            await asyncio.sleep(max(0.0, args.interval - (time.perf_counter() - begin)))
        return max(cpu, 0.0), checkins, time.perf_counter() - started

    cpu, checkins, wall = await measured(args.rounds)
    report.add(Measurement("no policies", cpu / checkins * 1e6, "µs CPU/check-in", False))
    print(f"  no policies: {checkins} check-ins in {wall:.1f} s, server CPU {cpu:.1f} s")

    async with httpx.AsyncClient(base_url=url, timeout=60) as api:
        login = await api.post(
            "/api/v1/fleet/login", json={"email": ADMIN[0], "password": ADMIN[1]}
        )
        api.headers["Authorization"] = f"Bearer {login.json()['token']}"
        for p in range(args.policies):
            made = await api.post(
                "/api/v1/fleet/policies",
                json={"name": f"bench {p}", "query": f"SELECT {p + 1}", "interval": args.interval},
            )
            if made.status_code != 201:
                raise RuntimeError(made.text)
        print(f"  {args.policies} policies created; first answers (unmeasured) ...")
        started = time.perf_counter()
        await fleet.round(spread)
        print(f"  first answers stored in {time.perf_counter() - started:.1f} s")
        await asyncio.sleep(args.interval)
        fleet.queries_seen = 0
        cpu, checkins, wall = await measured(args.rounds)
        report.add(
            Measurement(
                f"{args.policies} policies",
                cpu / checkins * 1e6,
                "µs CPU/check-in",
                False,
                extra={"queries_per_checkin": fleet.queries_seen / checkins},
            )
        )
        print(
            f"  {args.policies} policies: {checkins} check-ins in {wall:.1f} s, server CPU "
            f"{cpu:.1f} s, {fleet.queries_seen / checkins:.1f} queries per check-in"
        )

        receiver = Receiver()
        await receiver.start()
        hook = await api.post(
            "/api/v1/fleet/policies/1/webhooks",
            json={"url": f"http://127.0.0.1:{receiver.port}/events"},
        )
        if hook.status_code != 201:
            raise RuntimeError(hook.text)
        flips = list(range(0, args.hosts, max(1, args.hosts // args.flips)))[: args.flips]
        latencies: list[float] = []
        failing = {i: (i + 1) % 4 == 0 for i in flips}  # their answers so far
        expected = 0
        for r in range(args.latency_rounds):
            fleet.flipped = {i: r % 2 == 0 for i in flips}  # fail, pass, fail, ...
            expected += sum(1 for i in flips if failing[i] != fleet.flipped[i])
            failing = dict(fleet.flipped)
            begin = time.perf_counter()
            seen = len(receiver.events)
            await fleet.round(spread)
            deadline = time.perf_counter() + 30
            while len(receiver.events) < expected and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            for at, event in receiver.events[seen:]:
                sent = fleet.sent_at.get(str(event["host"]["hostname"]))
                if sent is not None:
                    latencies.append(at - sent)
            await asyncio.sleep(max(0.0, args.interval - (time.perf_counter() - begin)))
        await receiver.stop()
        summary = summarize(latencies)
        report.add(
            Measurement(
                "answer to webhook event",
                percentile(latencies, 95) * 1e3,
                "ms p95",
                False,
                latencies=summary,
                extra={"events": len(latencies)},
            )
        )
        report.notes.append(
            f"webhook events received: {len(latencies)} of {expected} expected; "
            f"p50 {summary.p50 * 1e3:.1f} ms, p95 {percentile(latencies, 95) * 1e3:.1f} ms, "
            f"p99 {summary.p99 * 1e3:.1f} ms"
        )
    report.params["failed_requests"] = fleet.failures


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench policies", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=20)
    parser.add_argument("--interval", type=int, default=10, help="the policies' interval (s)")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per phase")
    parser.add_argument("--flips", type=int, default=100, help="hosts flipping for latency")
    parser.add_argument("--latency-rounds", type=int, default=4)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to measure idle CPU")
    parser.add_argument("--concurrency", type=int, default=64, help="client connections")
    parser.add_argument("--database-url", default="", help="PostgreSQL URL (default SQLite)")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    report = Report(
        bench="policies",
        baseline="no policies",
        params={
            "hosts": args.hosts,
            "policies": args.policies,
            "interval": args.interval,
            "rounds": args.rounds,
            "flips": args.flips,
        },
    )
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-") as tmp:
        admin = {"admin_email": ADMIN[0], "admin_password": ADMIN[1]}
        with served(
            port, tmp, args.database_url, args.log_level, outbound_allow="127.0.0.0/8", **admin
        ) as server:
            assert server.pid is not None
            asyncio.run(_run(args, url, server.pid, report))
    report.print()
    path = report.save()
    print(f"results appended to {path}")
    return 1 if report.params.get("failed_requests") else 0
