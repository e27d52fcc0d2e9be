"""Request middleware cost: what the ops middleware adds to one request, in process.

`fleetwatch.ops.middleware.RequestMiddleware` runs on every request (request id, logging
context, latency histogram, agent outcome counter, access-log level check, and for user-API
writes a scan of the body for unstorable characters). The check-in path is benchmarked
end to end by `bench_checkin`, where a shared machine's noise hides a few microseconds; this
benchmark isolates them: the same trivial ASGI app (answers a constant JSON body) is called
directly (the baseline) and wrapped in the middleware, over a check-in path, a user GET and a
user POST with a 1 KiB JSON body, in interleaved rounds on one event loop. It prints the cost
per request of each and the middleware's share of a check-in's measured server CPU time.

Run: `python -m bench middleware [--requests 20000] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from bench._harness import Measurement, Report
from fleetwatch.ops.metrics import Metrics
from fleetwatch.ops.middleware import RequestMiddleware

BODY = orjson.dumps({"queries": {}, "discovery": {}})
POST_BODY = orjson.dumps({"name": "x" * 900, "n": 1, "tags": ["a", "b"]})
#: Server CPU per check-in measured by bench_checkin on this machine (docs/benchmarks.md).
CHECKIN_CPU_US = 280.0


async def trivial(scope: Any, receive: Any, send: Any) -> None:
    """The app under the middleware: read the body, answer a constant JSON object."""
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"json")]}
    )
    await send({"type": "http.response.body", "body": BODY})


def scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"fleet"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
    }


async def run_calls(app: Any, method: str, path: str, body: bytes, n: int) -> float:
    """Seconds per call of `app` for one request shape."""
    base = scope(method, path)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_: Any) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await app(dict(base), receive, send)
    return (time.perf_counter() - started) / n


SHAPES = {
    "check-in": ("POST", "/api/v1/osquery/distributed/read", b"{}"),
    "user GET": ("GET", "/api/v1/fleet/hosts", b""),
    "user POST 1 KiB": ("POST", "/docs/things", POST_BODY),
}


async def measure(requests: int, rounds: int) -> dict[str, list[float]]:
    wrapped = RequestMiddleware(trivial, Metrics())
    times: dict[str, list[float]] = {"baseline": []}
    for name in SHAPES:
        times[name] = []
    for _ in range(rounds):
        times["baseline"].append(await run_calls(trivial, "POST", "/x", b"{}", requests))
        for name, (method, path, body) in SHAPES.items():
            times[name].append(await run_calls(wrapped, method, path, body, requests))
    return times


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench middleware", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000, help="calls per shape per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(list(argv))
    times = asyncio.run(measure(args.requests, args.rounds))
    # The median round of each shape: robust to another process taking the core for a while.
    us = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    report = Report(
        bench="middleware",
        baseline="baseline",
        params={"requests": args.requests, "rounds": args.rounds},
    )
    report.add(Measurement("baseline", us["baseline"], "us/request", higher_is_better=False))
    for name in SHAPES:
        report.add(Measurement(name, us[name], "us/request", higher_is_better=False))
    added = us["check-in"] - us["baseline"]
    report.notes.append(
        f"the middleware adds {added:.1f} us to a check-in: {added / CHECKIN_CPU_US:.1%} of the "
        f"~{CHECKIN_CPU_US:.0f} us of server CPU a whole check-in takes (bench_checkin)"
    )
    report.notes.append(
        f"user GET +{us['user GET'] - us['baseline']:.1f} us, "
        f"user POST with a 1 KiB body +{us['user POST 1 KiB'] - us['baseline']:.1f} us "
        "(body read ahead and scanned for NUL and lone surrogates)"
    )
    report.print()
    if not args.no_save:
        report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
