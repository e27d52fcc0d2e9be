"""A timeline of the benchmark server's stalls, recorded inside its process (`--probe`).

Between `POST /bench/probe/start` and `POST /bench/probe/stop` it records, in wall-clock
seconds: the event loop's lag (a 5 ms sleep's overshoot), each SQLite write transaction
of the writer thread (`Database.run_write`: start and duration), each garbage collection
(generation, duration, objects collected) and the length of the SQLite WAL and how much of
it is checkpointed (sampled with the lag). `stop` answers with all of it; `summarize` tells
what a pause coincided with.
Measurement only: it wraps the writer's transaction function in the bench's child process.
"""

from __future__ import annotations

import asyncio
import gc
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Response

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

#: The lag sampler's period (s).
TICK = 0.005


def wal_frames(shm: Path) -> tuple[int, int] | None:
    """(frames in the WAL, frames of it checkpointed) from the WAL index's shared memory
    file: its header's mxFrame (offset 16) and the checkpoint info's nBackfill (offset 96),
    native byte order (sqlite.org/walformat.html)."""
    try:
        with open(shm, "rb") as f:
            head = os.pread(f.fileno(), 100, 0)
    except OSError:
        return None
    if len(head) < 100:
        return None
    (frames,) = struct.unpack_from("=I", head, 16)
    (backfilled,) = struct.unpack_from("=I", head, 96)
    return frames, backfilled


class Recorder:
    """The timeline of one probe window (appended to from the loop, the writer and gc)."""

    def __init__(self, shm: Path) -> None:
        self.shm = shm
        self.on = False
        self.lag: list[tuple[float, float]] = []
        self.wal_frames: list[tuple[float, int, int]] = []
        self.transactions: list[tuple[float, float, float, float, float]] = []
        self.collections: list[tuple[float, int, float, int]] = []
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.lag.clear()
        self.wal_frames.clear()
        self.transactions.clear()
        self.collections.clear()
        self.on = True
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> dict[str, Any]:
        self.on = False
        if self._task is not None:
            await self._task
            self._task = None
        return {
            "lag": self.lag,
            "wal_frames": self.wal_frames,
            "transactions": self.transactions,
            "collections": self.collections,
        }

    async def _sample(self) -> None:
        while self.on:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            now = time.time()
            self.lag.append((now, time.perf_counter() - before - TICK))
            log = wal_frames(self.shm)
            if log is not None:
                self.wal_frames.append((now, *log))

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_started
            self.collections.append((time.time(), info["generation"], took, info["collected"]))

    def transaction(self, engine: Engine, fn: Callable[[Connection], Any]) -> Any:
        """`Database.run_write`'s transaction, timed: its statements, its COMMIT (where
        SQLite's auto-checkpoint runs) and the thread's CPU time over both."""
        at, started, cpu = time.time(), time.perf_counter(), time.thread_time()
        with engine.begin() as conn:
            result = fn(conn)
            body = time.perf_counter() - started
        if self.on:
            took, cpu = time.perf_counter() - started, time.thread_time() - cpu
            self.transactions.append((at, took, body, took - body, cpu))
        return result


def install(app: FastAPI, data_dir: Path) -> None:
    """Add the probe routes to the app and hook the writer's transactions and the gc."""
    from fleetwatch.storage import database

    recorder = Recorder(Path(data_dir) / "fleetwatch.db-shm")
    database._in_transaction = recorder.transaction
    gc.callbacks.append(recorder.on_gc)

    @app.post("/bench/probe/start")
    async def probe_start() -> Response:
        recorder.start()
        return Response(b"{}", media_type="application/json")

    @app.post("/bench/probe/stop")
    async def probe_stop() -> Response:
        return Response(orjson.dumps(await recorder.stop()), media_type="application/json")


def summarize(timeline: dict[str, Any], begin: float, first: float = 2.0) -> list[str]:
    """Lines describing the timeline from `begin` (wall s): the first `first` seconds
    against the rest, and each pause (lag or transaction over 20 ms, any full collection)."""

    def part(rows: list[Any], early: bool) -> list[Any]:
        return [r for r in rows if (r[0] - begin < first) == early and r[0] >= begin]

    def p99(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[int(0.99 * (len(ordered) - 1))] * 1e3 if ordered else 0.0

    lines = []
    for early, name in ((True, f"first {first:g} s"), (False, "rest")):
        lag = [r[1] for r in part(timeline["lag"], early)]
        txn = [r[1] for r in part(timeline["transactions"], early)]
        gcs = part(timeline["collections"], early)
        log = [r[1] for r in part(timeline["wal_frames"], early)]
        behind = [r[1] - r[2] for r in part(timeline["wal_frames"], early)]
        commits = [r[3] for r in part(timeline["transactions"], early)]
        lines.append(
            f"{name}: loop lag p99 {p99(lag):.1f} max {max(lag, default=0) * 1e3:.1f} ms; "
            f"write txn n={len(txn)} p99 {p99(txn):.1f} max {max(txn, default=0) * 1e3:.1f} ms "
            f"(commits over 5 ms: {sum(1 for c in commits if c > 0.005)}, "
            f"{sum(c for c in commits if c > 0.005) * 1e3:.0f} ms); "
            f"gc gen0/1/2 {[sum(1 for g in gcs if g[1] == n) for n in range(3)]} "
            f"(max {max((g[2] for g in gcs), default=0) * 1e3:.1f} ms); "
            f"WAL frames max {max(log, default=0)}, not yet checkpointed max "
            f"{max(behind, default=0)}"
        )
    events = [(r[0], f"lag {r[1] * 1e3:.0f} ms") for r in timeline["lag"] if r[1] > 0.02]
    events += [
        (
            r[0],
            f"txn {r[1] * 1e3:.0f} ms (statements {r[2] * 1e3:.0f}, commit {r[3] * 1e3:.0f}, "
            f"thread cpu {r[4] * 1e3:.0f})",
        )
        for r in timeline["transactions"]
        if r[1] > 0.02
    ]
    events += [
        (r[0], f"gc gen{r[1]} {r[2] * 1e3:.0f} ms ({r[3]} freed)")
        for r in timeline["collections"]
        if r[1] == 2 or r[2] > 0.01
    ]
    for at, what in sorted(events)[:40]:
        lines.append(f"  +{at - begin:6.3f} s {what}")
    return lines
