"""Live group counts: 100,000 documents, 2,000 writes/s, write to WebSocket notification.

The real server (the app and uvicorn configuration of `fleetwatch serve`, SQLite in a temp
dir) runs in its own process with one bench-only route, `POST /bench/regroup`, that PATCHes
documents on the server's loop at a given rate, in `DocumentIndex.apply` calls of `--batch`
documents, each moving its document to another of `--groups` teams, and answers with the
time the schedule issued each write. 100,000 documents (`--docs`) are loaded first.

Rounds, in this order, each over its own documents (every write moves a count):

- `write round-trip (no task)`: the baseline, the time from issuing a write to its commit.
- `notify, COUNT + CONTINUOUS`: a plain live count over the 100,000 documents, one
  WebSocket subscriber; every write is an update, so every notification carries the count.
- `notify, GROUP_BY + COUNT + CONTINUOUS`: live group counts, one WebSocket subscriber;
  each notification carries the two groups the write moved.

Notification latency is the receive time minus the write's issue time (same machine clock),
matched by document link. It also reports how long the group-count task took to start (one
GROUP BY over the 100,000 documents). Target: group-count notification p99 under 50 ms.
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
from fastapi import Request, Response

from bench._harness import Measurement, Report, percentile, summarize
from bench._processes import profiled
from bench.bench_notify_latency import _free_port, _wait_ready

TARGET_P99_MS = 50.0
ADMIN = {"email": "bench@example.com", "password": "bench-password-1"}
KIND = "docs:bench"


def _serve(settings_kwargs: dict[str, Any]) -> None:
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
    app.state.tune_gc = tune_gc  # as run_server sets it

    @app.post("/bench/regroup")
    async def paced_writes(request: Request) -> Response:
        spec = orjson.loads(await request.body())
        first_doc, count = int(spec["first"]), int(spec["count"])
        rate, batch, groups = float(spec["rate"]), int(spec["batch"]), int(spec["groups"])
        action = Action(spec["action"])
        index = app.state.services.index
        latencies: list[float] = []
        issued: dict[str, int] = {}

        async def one(first: int, due: float) -> None:
            stamp = wall_begin + int((due - begin) * 1e9)  # when the schedule issued it
            writes = []
            for i in range(first, min(first + batch, count)):
                n = first_doc + i
                link = f"/docs/bench/d{n}"
                issued[link] = stamp
                # the next team along: every write moves its document to another group
                team = f"team{(n + (1 if action is Action.PATCH else 0)) % groups}"
                body: dict[str, Any] = {"team": team, "n": n}
                if action is Action.POST:
                    body["documentSelfLink"] = f"d{n}"
                writes.append(Write(action, link, KIND, body))
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
        await asyncio.gather(*pending)
        answer = {
            "latencies": latencies,
            "issued": issued,
            "total_seconds": time.perf_counter() - begin,
        }
        # orjson, not FastAPI's encoder: that walks the 20,000 entries for ~100 ms on the
        # loop, just as the last writes' notifications are due (it inflated the max).
        return Response(orjson.dumps(answer), media_type="application/json")

    uvicorn.Server(config).run()


def _task(grouped: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "query": {"term": {"propertyName": "documentKind", "matchValue": KIND}},
        "options": ["CONTINUOUS", "COUNT"],
    }
    if grouped:
        spec["options"].append("GROUP_BY")
        spec["groupByTerm"] = {"propertyName": "team"}
    return {
        "taskInfo": {"isDirect": False},
        "documentExpirationTimeMicros": 2**63 - 1,
        "querySpec": spec,
    }


async def _notify_round(
    url: str, token: str, writes: dict[str, Any], grouped: bool
) -> tuple[list[float], dict[str, Any], float]:
    """Create the task, subscribe over WebSocket, write, and time each notification:
    (latencies, the route's answer, seconds the task took to start)."""
    from websockets.asyncio.client import connect

    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        started = time.perf_counter()
        created = await client.post("/core/local-query-tasks", json=_task(grouped))
        start_seconds = time.perf_counter() - started
        if created.status_code != 202:
            raise RuntimeError(f"the task was refused: {created.text}")
        link = created.json()["documentSelfLink"]
        ws_url = url.replace("http://", "ws://") + f"{link}/stream"
        received: dict[str, int] = {}
        async with connect(ws_url, additional_headers=headers, max_size=None) as ws:
            while orjson.loads(await ws.recv())["type"] != "current":
                pass  # the initial results
            writer = asyncio.create_task(client.post("/bench/regroup", json=writes))
            while len(received) < writes["count"]:
                raw = await asyncio.wait_for(ws.recv(), 120)
                at = time.time_ns()
                message = orjson.loads(raw)
                if message["type"] != "change":
                    raise RuntimeError(f"unexpected message {message['type']}: {message}")
                if grouped and len(message["results"]["groupCounts"]) != 2:
                    raise RuntimeError(f"a move changes two groups: {message}")
                (doc,) = message["results"]["documentLinks"]
                received[doc] = at
            answer = (await writer).json()
        await client.delete(link)
    issued = answer["issued"]
    return [(received[doc] - issued[doc]) / 1e9 for doc in received], answer, start_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000, help="documents in the index")
    parser.add_argument("--groups", type=int, default=50, help="teams the documents are in")
    parser.add_argument("--rate", type=float, default=2000.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each round")
    parser.add_argument("--batch", type=int, default=10, help="writes per index call")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="profile the server with py-spy (raw stacks per thread) during the group-count "
        "round into DIR/server-grouped.txt (summarize with python -m bench._spy_summary)",
    )
    parser.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per s")
    args = parser.parse_args(argv)
    count = int(args.rate * args.seconds)
    if 3 * count > args.docs:
        parser.error("each round needs its own documents: --docs >= 3 * rate * seconds")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"

    def writes(first: int, action: str, n: int, rate: float, batch: int) -> dict[str, Any]:
        return {
            "first": first,
            "count": n,
            "rate": rate,
            "batch": batch,
            "groups": args.groups,
            "action": action,
        }

    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-") as tmp:
        settings = {
            "host": "127.0.0.1",
            "port": port,
            "data_dir": str(Path(tmp) / "data"),
            "admin_email": ADMIN["email"],
            "admin_password": ADMIN["password"],
            "log_level": "warning",
        }
        server = mp.get_context("spawn").Process(target=_serve, args=(settings,), daemon=True)
        server.start()
        try:
            _wait_ready(url)
            token = httpx.post(f"{url}/api/v1/fleet/login", json=ADMIN).json()["token"]
            headers = {"authorization": f"Bearer {token}"}
            httpx.post(
                f"{url}/bench/regroup",
                json=writes(0, "POST", args.docs, 1e9, 500),
                headers=headers,
                timeout=600,
            ).raise_for_status()
            baseline = httpx.post(
                f"{url}/bench/regroup",
                json=writes(0, "PATCH", count, args.rate, args.batch),
                headers=headers,
                timeout=300,
            ).json()
            plain, plain_writes, _ = asyncio.run(
                _notify_round(
                    url, token, writes(count, "PATCH", count, args.rate, args.batch), False
                )
            )
            profile = None
            if args.py_spy is not None:
                Path(args.py_spy).mkdir(parents=True, exist_ok=True)
                profile = Path(args.py_spy, "server-grouped.txt")
            assert server.pid is not None
            with profiled(server.pid, profile, args.py_spy_rate):
                grouped, grouped_writes, start_seconds = asyncio.run(
                    _notify_round(
                        url, token, writes(2 * count, "PATCH", count, args.rate, args.batch), True
                    )
                )
        finally:
            server.terminate()
            server.join(timeout=30)

    report = Report(
        bench="group_counts",
        baseline="write round-trip (no task)",
        params={
            "docs": args.docs,
            "groups": args.groups,
            "rate": args.rate,
            "batch": args.batch,
            "seconds": args.seconds,
            "writes": count,
            "db": "sqlite",
        },
    )
    rows = [
        ("write round-trip (no task)", baseline["latencies"], baseline),
        ("notify, COUNT + CONTINUOUS", plain, plain_writes),
        ("notify, GROUP_BY + COUNT + CONTINUOUS", grouped, grouped_writes),
    ]
    for name, latencies, answer in rows:
        summary = summarize(latencies)
        report.add(
            Measurement(
                name,
                summary.p99 * 1e3,
                "ms p99",
                higher_is_better=False,
                latencies=summary,
                extra={
                    "p95_ms": round(percentile(latencies, 95) * 1e3, 3),
                    "rate": round(count / answer["total_seconds"]),
                },
            )
        )
    p99 = summarize(grouped).p99 * 1e3
    report.notes.append(
        f"group-count task start over {args.docs:,} documents (one GROUP BY): "
        f"{start_seconds * 1e3:.0f} ms"
    )
    report.notes.append(
        f"group-count notify p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms: "
        f"{'met' if p99 < TARGET_P99_MS else 'NOT met'})"
    )
    report.print()
    if not args.no_save:
        report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
