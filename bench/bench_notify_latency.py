"""Continuous query notification latency: index write to WebSocket delivery, at 2,000 writes/s.

The real server (the app and uvicorn configuration of `fleetwatch serve`, SQLite in a temp
dir) runs in its own process, with one bench-only route, `POST /bench/write`, that paces
index writes at a given rate on the server's loop, in `DocumentIndex.apply` calls of
`--batch` documents (as an ingest path would; concurrent calls are group-committed), and
answers with each write's round-trip time. Every document carries the wall-clock time its
write was due by the schedule (not when the loop got round to it), so a loop that falls
behind shows up as latency instead of hiding it.

Two rounds, in this order:

- `write round-trip (no subscriber)`: the baseline. No task exists; the figure is the time
  from issuing a write to its commit returning, at the same rate.
- `notify (write -> WebSocket)`: a CONTINUOUS+EXPAND_CONTENT task on the written kind, one
  WebSocket subscriber in this (separate) process. For each notification the latency is the
  receive time minus the write's issue time (same machine clock).

It prints p50/p95/p99 of both, the write rate achieved, and the ratio of the notification
p99 to the baseline write p99. Target: notification p99 under 50 ms at 2,000 writes/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import Request

from bench._harness import Measurement, Report, percentile, summarize

TARGET_P99_MS = 50.0
ADMIN = {"email": "bench@example.com", "password": "bench-password-1"}
KIND = "docs:bench"


def _serve(settings_kwargs: dict[str, Any], gc_tuning: bool = True) -> None:
    """Child process: the server plus the pacing route, until terminated."""
    import uvicorn
    from fastapi import FastAPI

    from fleetwatch.config import Settings
    from fleetwatch.index import Action, Write
    from fleetwatch.server import tune_gc, uvicorn_config

    settings = Settings(**settings_kwargs)
    config = uvicorn_config(settings)  # what `fleetwatch serve` runs
    app = config.app
    assert isinstance(app, FastAPI)
    if gc_tuning:
        app.state.tune_gc = tune_gc  # as run_server sets it

    @app.post("/bench/write")
    async def paced_writes(request: Request) -> dict[str, Any]:
        spec = orjson.loads(await request.body())
        count, rate, prefix = int(spec["count"]), float(spec["rate"]), str(spec["prefix"])
        batch = int(spec["batch"])
        index = app.state.services.index
        latencies: list[float] = []

        async def one(first: int, due: float) -> None:
            issued = wall_begin + int((due - begin) * 1e9)  # when the schedule issued it
            started = due
            await index.apply(
                [
                    Write(Action.POST, f"/docs/bench/{prefix}{i}", KIND, {"i": i, "t_ns": issued})
                    for i in range(first, min(first + batch, count))
                ]
            )
            elapsed = time.perf_counter() - started
            latencies.extend([elapsed] * (min(first + batch, count) - first))

        pending: list[asyncio.Task[None]] = []
        wall_begin, begin = time.time_ns(), time.perf_counter()
        for first in range(0, count, batch):
            due = begin + first / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(first, due)))
        issued_in = time.perf_counter() - begin
        await asyncio.gather(*pending)
        return {
            "latencies": latencies,
            "issue_seconds": issued_in,
            "total_seconds": time.perf_counter() - begin,
        }

    uvicorn.Server(config).run()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def _notify_round(
    url: str, token: str, count: int, rate: float, batch: int
) -> tuple[list[float], dict[str, Any]]:
    """Create the task, subscribe over WebSocket, write, and time each notification."""
    from websockets.asyncio.client import connect

    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        task = {
            "taskInfo": {"isDirect": False},
            "documentExpirationTimeMicros": 2**63 - 1,
            "querySpec": {
                "query": {"term": {"propertyName": "documentKind", "matchValue": KIND}},
                "options": ["CONTINUOUS", "EXPAND_CONTENT"],
            },
        }
        created = (await client.post("/core/local-query-tasks", json=task)).json()
        link = created["documentSelfLink"]
        ws_url = url.replace("http://", "ws://") + f"{link}/stream"
        latencies: list[float] = []
        async with connect(ws_url, additional_headers=headers, max_size=None) as ws:
            while True:  # the initial results, up to the caught-up marker
                message = orjson.loads(await ws.recv())
                if message["type"] == "current":
                    break
            writer = asyncio.create_task(
                client.post(
                    "/bench/write",
                    json={"count": count, "rate": rate, "prefix": "n", "batch": batch},
                )
            )
            while len(latencies) < count:
                if writer.done() and writer.result().status_code != 200:
                    raise RuntimeError(f"the writes failed: {writer.result().text}")
                raw = await asyncio.wait_for(ws.recv(), 60)
                received = time.time_ns()
                message = orjson.loads(raw)
                if message["type"] != "change":
                    raise RuntimeError(f"unexpected message {message['type']}: {message}")
                (doc,) = message["results"]["documents"].values()
                latencies.append((received - doc["t_ns"]) / 1e9)
            writes = (await writer).json()
        return latencies, writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each round")
    parser.add_argument(
        "--batch", type=int, default=10, help="writes per index call (an agent's log batch)"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--no-gc-tuning",
        action="store_true",
        help="leave the collector as CPython sets it (fleetwatch serve tunes it at start)",
    )
    args = parser.parse_args(argv)
    count = int(args.rate * args.seconds)
    port = _free_port()
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
            target=_serve, args=(settings, not args.no_gc_tuning), daemon=True
        )
        server.start()
        try:
            _wait_ready(url)
            token = httpx.post(f"{url}/api/v1/fleet/login", json=ADMIN).json()["token"]
            headers = {"authorization": f"Bearer {token}"}
            baseline = httpx.post(
                f"{url}/bench/write",
                json={"count": count, "rate": args.rate, "prefix": "b", "batch": args.batch},
                headers=headers,
                timeout=300,
            ).json()
            notify, writes = asyncio.run(_notify_round(url, token, count, args.rate, args.batch))
        finally:
            server.terminate()
            server.join(timeout=30)

    report = Report(
        bench="notify_latency",
        baseline="write round-trip (no subscriber)",
        params={
            "rate": args.rate,
            "batch": args.batch,
            "seconds": args.seconds,
            "gc_tuning": not args.no_gc_tuning,
            "writes": count,
            "db": "sqlite",
        },
    )
    base = summarize(baseline["latencies"])
    with_sub = summarize(writes["latencies"])
    note = summarize(notify)
    report.add(
        Measurement(
            "write round-trip (no subscriber)",
            base.p99 * 1e3,
            "ms p99",
            higher_is_better=False,
            latencies=base,
            extra={
                "p95_ms": round(percentile(baseline["latencies"], 95) * 1e3, 3),
                "rate": count / baseline["total_seconds"],
            },
        )
    )
    report.add(
        Measurement(
            "write round-trip (1 task, 1 WS subscriber)",
            with_sub.p99 * 1e3,
            "ms p99",
            higher_is_better=False,
            latencies=with_sub,
            extra={"p95_ms": round(percentile(writes["latencies"], 95) * 1e3, 3)},
        )
    )
    report.add(
        Measurement(
            "notify (write -> WebSocket)",
            note.p99 * 1e3,
            "ms p99",
            higher_is_better=False,
            latencies=note,
            extra={
                "p95_ms": round(percentile(notify, 95) * 1e3, 3),
                "rate": count / writes["total_seconds"],
            },
        )
    )
    rate_base = count / baseline["total_seconds"]
    rate_notify = count / writes["total_seconds"]
    report.notes.append(
        f"write rate achieved: {rate_base:,.0f}/s (baseline round), {rate_notify:,.0f}/s "
        f"(notify round), target {args.rate:,.0f}/s"
    )
    report.notes.append(
        f"notify p50/p95/p99: {note.p50 * 1e3:.2f} / {percentile(notify, 95) * 1e3:.2f} / "
        f"{note.p99 * 1e3:.2f} ms (target p99 < {TARGET_P99_MS:.0f} ms: "
        f"{'met' if note.p99 * 1e3 < TARGET_P99_MS else 'NOT met'})"
    )
    report.notes.append(
        f"write round-trip p50/p95/p99 without subscriber: {base.p50 * 1e3:.2f} / "
        f"{percentile(baseline['latencies'], 95) * 1e3:.2f} / {base.p99 * 1e3:.2f} ms"
    )
    report.print()
    if not args.no_save:
        report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
