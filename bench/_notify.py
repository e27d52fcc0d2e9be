"""The plumbing of the write-to-notification latency benchmarks (bench_notify_latency,
bench_group_counts): the real server in its own process with a bench-only pacing route, a
WebSocket subscriber that times each notification, and the latency figures of a round.

The server is the app and uvicorn configuration of `fleetwatch serve` (SQLite in a temp
dir) plus `POST /bench/paced`, which issues index writes at a given rate on the server's
loop, in `DocumentIndex.apply` calls of `batch` documents (as an ingest path would;
concurrent calls are group-committed). Each write's document is made by the benchmark's
`Build` function (a module-level function, so that it reaches the spawned child) and
stamped with the wall-clock time the schedule issued it, not when the loop got round to
it: a loop that falls behind shows up as latency instead of hiding it. The route answers
with each write's round-trip and issue time. `--probe` adds the timeline routes of
`bench._server_probe`.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from fastapi import Request, Response

from bench._harness import Measurement, percentile, summarize
from bench._processes import free_port

if TYPE_CHECKING:
    from fleetwatch.index import Write

ADMIN = {"email": "bench@example.com", "password": "bench-password-1"}

#: Makes write `i` of a paced run: (the run's spec as posted, i) -> the write.
Build = Callable[[dict[str, Any], int], "Write"]


def _serve(settings_kwargs: dict[str, Any], build: Build, gc_tuning: bool, probe: bool) -> None:
    """Child process: the server plus the pacing route (and the probe's), until terminated."""
    import uvicorn
    from fastapi import FastAPI

    from fleetwatch.config import Settings
    from fleetwatch.server import tune_memory, uvicorn_config

    settings = Settings(**settings_kwargs)
    config = uvicorn_config(settings)  # what `fleetwatch serve` runs
    app = config.app
    assert isinstance(app, FastAPI)
    if gc_tuning:
        app.state.tune_gc = tune_memory  # as run_server sets it (GC tuning, heap trimmer)
    if probe:
        from bench._server_probe import install

        install(app, settings.data_dir)

    @app.post("/bench/paced")
    async def paced_writes(request: Request) -> Response:
        spec = orjson.loads(await request.body())
        count, rate, batch = int(spec["count"]), float(spec["rate"]), int(spec["batch"])
        index = app.state.services.index
        latencies: list[float] = []
        issued: dict[str, int] = {}

        async def one(first: int, due: float) -> None:
            stamp = wall_begin + int((due - begin) * 1e9)  # when the schedule issued it
            writes = [build(spec, i) for i in range(first, min(first + batch, count))]
            for write in writes:
                issued[write.self_link] = stamp
            await index.apply(writes)
            latencies.extend([time.perf_counter() - due] * len(writes))

        pending: list[asyncio.Task[None]] = []
        wall_begin, begin = time.time_ns(), time.perf_counter()
        for first in range(0, count, batch):
            due = begin + first / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(first, due)))
        issue_seconds = time.perf_counter() - begin
        await asyncio.gather(*pending)
        answer = {
            "latencies": latencies,
            "issued": issued,
            "issue_seconds": issue_seconds,
            "total_seconds": time.perf_counter() - begin,
        }
        # orjson, not FastAPI's encoder: that walks the 20,000 entries for ~100 ms on the
        # loop, just as the last writes' notifications are due (it inflated the max).
        return Response(orjson.dumps(answer), media_type="application/json")

    uvicorn.Server(config).run()


@dataclass(frozen=True)
class Server:
    """A running benchmark server: its address, an admin's token and its process id."""

    url: str
    token: str
    pid: int

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def paced(self, spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """Run `POST /bench/paced` and return its answer."""
        response = httpx.post(
            f"{self.url}/bench/paced", json=spec, headers=self.headers, timeout=timeout
        )
        if response.status_code != 200:
            raise RuntimeError(f"the paced writes failed: {response.text}")
        answer: dict[str, Any] = response.json()
        return answer


def _wait_ready(url: str, proc: mp.process.BaseProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError("the server process died on start")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


@contextmanager
def running_server(
    build: Build, *, gc_tuning: bool = True, probe: bool = False
) -> Iterator[Server]:
    """The server in a spawned process over a fresh data dir, ready and logged in to."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-") as tmp:
        settings = {
            "host": "127.0.0.1",
            "port": port,
            "data_dir": str(Path(tmp) / "data"),
            "admin_email": ADMIN["email"],
            "admin_password": ADMIN["password"],
            "log_level": "warning",
        }
        server = mp.get_context("spawn").Process(
            target=_serve, args=(settings, build, gc_tuning, probe), daemon=True
        )
        server.start()
        try:
            _wait_ready(url, server)
            token = httpx.post(f"{url}/api/v1/fleet/login", json=ADMIN).json()["token"]
            assert server.pid is not None
            yield Server(url, token, server.pid)
        finally:
            server.terminate()
            server.join(timeout=30)


@dataclass(frozen=True)
class Round:
    """A notification round: each write's notification latency (s), the pacing route's
    answer, and how long the task took to create (its initial query)."""

    latencies: list[float]
    writes: dict[str, Any]
    start_seconds: float


async def notify_round(
    server: Server,
    task: dict[str, Any],
    spec: dict[str, Any],
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Round:
    """Create the task, subscribe to its stream over WebSocket, run the paced writes of
    `spec`, and time each write's notification (receive time minus issue time, matched by
    document link; `check` may refuse a message by raising)."""
    from websockets.asyncio.client import connect

    count = int(spec["count"])
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, timeout=300
    ) as client:
        started = time.perf_counter()
        created = await client.post("/core/local-query-tasks", json=task)
        start_seconds = time.perf_counter() - started
        if created.status_code != 202:
            raise RuntimeError(f"the task was refused: {created.text}")
        link = created.json()["documentSelfLink"]
        ws_url = server.url.replace("http://", "ws://") + f"{link}/stream"
        received: dict[str, int] = {}
        async with connect(ws_url, additional_headers=server.headers, max_size=None) as ws:
            while orjson.loads(await ws.recv())["type"] != "current":
                pass  # the initial results, up to the caught-up marker
            writer = asyncio.create_task(client.post("/bench/paced", json=spec))
            while len(received) < count:
                if writer.done() and writer.result().status_code != 200:
                    raise RuntimeError(f"the writes failed: {writer.result().text}")
                raw = await asyncio.wait_for(ws.recv(), 120)
                at = time.time_ns()
                message = orjson.loads(raw)
                if message["type"] != "change":
                    raise RuntimeError(f"unexpected message {message['type']}: {message}")
                if check is not None:
                    check(message)
                (doc,) = message["results"]["documentLinks"]
                received[doc] = at
            response = await writer
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
        await client.delete(link)
    issued = answer["issued"]
    latencies = [(received[doc] - issued[doc]) / 1e9 for doc in received]
    return Round(latencies, answer, start_seconds)


def latency_measurement(
    name: str, latencies: list[float], total_seconds: float | None = None
) -> Measurement:
    """A round's p99 in ms, with its spread, p95 and (given the round's length) its rate."""
    extra: dict[str, Any] = {"p95_ms": round(percentile(latencies, 95) * 1e3, 3)}
    if total_seconds is not None:
        extra["rate"] = round(len(latencies) / total_seconds)
    summary = summarize(latencies)
    return Measurement(
        name, summary.p99 * 1e3, "ms p99", higher_is_better=False, latencies=summary, extra=extra
    )
