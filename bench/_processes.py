"""A benchmark's child processes: a free port to serve on, a command run as a child (and
profiled with py-spy), waiting for a server to listen or be ready, stopping it, and what a
process tree costs (CPU seconds, over a window too, and resident memory, from /proc).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench._http_load import cpu_seconds as process_cpu_seconds


async def wait_ready(
    url: str, proc: mp.process.BaseProcess, timeout: float = 60, poll: float = 0.1
) -> None:
    """Return when the server answers /healthz; RuntimeError if its process died first."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if not proc.is_alive():
                raise RuntimeError("the server process died on start; see its log")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(poll)
    raise TimeoutError(f"the server at {url} was not ready within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_server(server: mp.process.BaseProcess, log_path: Path) -> None:
    """Stop the server process (killed if it does not end within 30 s) and print the last
    lines of its log."""
    server.terminate()
    server.join(30)
    if server.is_alive():
        server.kill()
        server.join()
    log = log_path.read_text(encoding="utf-8", errors="replace").strip()
    if log:
        print("server log (last lines):\n  " + "\n  ".join(log.splitlines()[-10:]))


ROOT = Path(__file__).resolve().parent.parent


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (`fleetwatch serve --workers N`: the supervisor and
    its workers), from /proc."""
    found = [pid]
    for parent in found:
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process and its descendants, summed, KiB (Linux /proc)."""
    out: dict[str, int] = {}
    for one in process_tree(pid):
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    out[name] = out.get(name, 0) + int(value.split()[0])
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its live descendants (None if it is gone)."""
    total = process_cpu_seconds(pid)
    if total is None:
        return None
    return total + sum(process_cpu_seconds(c) or 0.0 for c in process_tree(pid)[1:])


class CpuWindow:
    """The CPU seconds that process trees spend from this window's creation on."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start = self._now()

    def _now(self) -> list[float]:
        # A process that is gone reads 0 s: /proc no longer has its CPU.
        return [cpu_seconds(pid) or 0.0 for pid in self.pids]

    def spent(self) -> list[float]:
        """CPU seconds of each tree since the window opened, in the order of its pids."""
        return [now - start for now, start in zip(self._now(), self.start, strict=True)]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
    paths = [str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


@contextmanager
def process(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with its output in `log_path`, interrupted (then killed) at exit."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=_environment(), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def listening(command: list[str], port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`process(command, log_path)` once something listens on `port` (a server it started)."""
    with process(command, log_path) as proc:
        wait_listening(port, proc)
        yield proc


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Return once `port` accepts connections; RuntimeError if `proc` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} on start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:g} s")


@contextmanager
def profiled(pid: int, out: Path | None, rate: int) -> Iterator[None]:
    """py-spy samples the process (raw collapsed stacks, per thread) while the block runs."""
    if out is None:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    command += ["--threads", "--nonblocking", "--output", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
