"""A light HTTP/1.1 load generator: keep-alive connections in separate processes.

Each client process runs raw HTTP/1.1 over asyncio (uvloop when installed) with one callback
per response and sends the next request the moment the previous answer is complete (a
closed loop), so it costs far less CPU per request than a Python server does and the server,
not the load generator, is the limit. Requests are pre-built bytes; answers are checked for
a 200 status and an expected substring of the body.

    clients = LoadClients.start(port, {"bare": (per_proc_requests, b'"ok"'), ...}, procs=1)
    results = clients.run("bare", warmup=1, duration=5, server_pid=pid)
    clients.close()
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

#: Per phase name: for each client process, for each of its connections, the requests it
#: cycles through; and the bytes every answer's body must contain.
Phases = dict[str, tuple[list[list[list[bytes]]], bytes]]


@dataclass
class PhaseResult:
    """What one client process saw during one measured window."""

    completed: int = 0
    errors: int = 0
    unexpected: int = 0
    window: float = 0.0
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float | None = None
    first_error: str = ""


def post_requests(path: str, port: int, bodies: Sequence[bytes]) -> list[bytes]:
    """Raw `POST path` HTTP/1.1 requests with JSON bodies, headers as osquery sends them."""
    out = []
    for body in bodies:
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "User-Agent: osquery/5.23.1\r\n"
            "Accept: application/json\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def split(requests: list[bytes], connections: int, procs: int) -> list[list[list[bytes]]]:
    """Per client process, per connection, the requests it cycles through.

    Connection c gets requests c, c+C, c+2C, ... (disjoint while there are at least as many
    requests as connections; otherwise every connection gets all of them).
    """
    per_conn = [requests[c::connections] or requests for c in range(connections)]
    return [per_conn[p::procs] for p in range(procs)]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Run:
    """Shared state of the connections of one phase in one client process."""

    def __init__(self, expect: bytes, total: int) -> None:
        self.expect = expect
        self.total = total
        self.running = True
        self.measuring = False
        self.result = PhaseResult()
        self.closed = 0
        self.all_closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends the next request the moment a response completes."""

    def __init__(self, requests: list[bytes], run: _Run) -> None:
        self.requests = requests
        self.next = 0
        self.run = run
        self.buffer = b""
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        request = self.requests[self.next]
        self.next = (self.next + 1) % len(self.requests)
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            at = head.find(b"content-length:")
            if at < 0:
                self._fail(f"response without content-length: {head[:200]!r}")
                return
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else None])
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body = self.buffer[head_end + 4 : end]
            self.buffer = self.buffer[end:]
            self._completed(head.startswith(b"http/1.1 200"), body, head)

    def _completed(self, status_ok: bool, body: bytes, head: bytes) -> None:
        run = self.run
        if run.measuring:
            result = run.result
            result.latencies.append(time.perf_counter() - self.sent_at)
            result.completed += 1
            if not status_ok:
                result.errors += 1
                result.first_error = result.first_error or (head[:80] + b" " + body[:200]).decode()
            elif run.expect not in body:
                result.unexpected += 1
                result.first_error = result.first_error or body[:200].decode()
        if run.running:
            self._send()
        elif self.transport is not None:
            self.transport.close()

    def _fail(self, message: str) -> None:
        self.run.result.errors += 1
        self.run.result.first_error = self.run.result.first_error or message
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        if run.running and exc is not None:
            run.result.errors += 1
            run.result.first_error = run.result.first_error or f"connection lost: {exc}"
        run.closed += 1
        if run.closed == run.total and not run.all_closed.done():
            run.all_closed.set_result(None)


async def run_phase(
    port: int,
    requests_per_conn: list[list[bytes]],
    expect: bytes,
    warmup: float,
    duration: float,
    server_pid: int,
) -> PhaseResult:
    """Open the connections, run `warmup` s unmeasured then `duration` s measured, close."""
    loop = asyncio.get_running_loop()
    run = _Run(expect, len(requests_per_conn))
    for requests in requests_per_conn:
        await loop.create_connection(
            lambda r=requests: _Connection(r, run),  # type: ignore[misc]
            "127.0.0.1",
            port,
        )
    await asyncio.sleep(warmup)
    server_before = cpu_seconds(server_pid)
    cpu_before = time.process_time()
    started = time.perf_counter()
    run.measuring = True
    await asyncio.sleep(duration)
    run.measuring = False
    run.result.window = time.perf_counter() - started
    run.result.client_cpu = time.process_time() - cpu_before
    server_after = cpu_seconds(server_pid)
    if server_before is not None and server_after is not None:
        run.result.server_cpu = server_after - server_before
    run.running = False
    try:
        await asyncio.wait_for(run.all_closed, 10)
    except TimeoutError:
        pass
    return run.result


def _client(
    pipe: Connection, port: int, phases: dict[str, tuple[list[list[bytes]], bytes]]
) -> None:
    """Child process: runs phases on command (name, warmup, duration, server pid)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    while True:
        command = pipe.recv()
        if command is None:
            return
        name, warmup, duration, server_pid = command
        requests, expect = phases[name]
        pipe.send(asyncio.run(run_phase(port, requests, expect, warmup, duration, server_pid)))


@dataclass
class LoadClients:
    """The running client processes and the pipes that command them."""

    clients: list[tuple[mp.process.BaseProcess, Connection]]

    @classmethod
    def start(cls, port: int, phases: Phases, procs: int) -> LoadClients:
        """Start `procs` client processes (spawned), each with its share of every phase."""
        ctx = mp.get_context("spawn")
        clients: list[tuple[mp.process.BaseProcess, Connection]] = []
        for p in range(procs):
            parent_end, child_end = ctx.Pipe()
            mine = {name: (per_proc[p], expect) for name, (per_proc, expect) in phases.items()}
            proc = ctx.Process(target=_client, args=(child_end, port, mine), daemon=True)
            proc.start()
            clients.append((proc, parent_end))
        return cls(clients)

    def run(self, name: str, warmup: float, duration: float, server_pid: int) -> list[PhaseResult]:
        """Run one phase in every client process at once; their results."""
        for _, pipe in self.clients:
            pipe.send((name, warmup, duration, server_pid))
        return [pipe.recv() for _, pipe in self.clients]

    def close(self) -> None:
        """Stop the client processes (they exit on a None command)."""
        for proc, pipe in self.clients:
            try:
                pipe.send(None)
            except OSError:
                pass
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
