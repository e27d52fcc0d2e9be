"""Campaign results at 100,000 hosts: the server's peak RSS while exporting and paging.

A campaign with `--results` stored answers (`--rows` rows each, osquery's stats) is written
into a fresh store, then `fleetwatch serve` (the real CLI, a child process) starts on it.
The baseline is that process idle (after login and one request), sampled from
/proc/PID/status; each phase samples VmRSS every `--sample-ms` and reports its peak, in MiB
and as a ratio to the idle figure:

- `export ndjson` and `export csv`: `GET .../results?format=...`, read as it streams;
- `pages by host`: every page of `--per-page` results, by `next` cursor;
- `pages by wall time`: the first `--sorted-pages` pages ordered by `wall_time_ms`
  descending (each page sorts the campaign's results in the store, O(results) there).

Constant memory shows as peaks that do not grow with `--results` (run it with 10,000 and
100,000 to see). `python -m bench results --results 100000`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench._harness import Measurement, Report
from bench._lean_fleet import ADMIN_EMAIL, ADMIN_PASSWORD, serve_command
from bench._processes import free_port, listening, memory_kib

CAMPAIGN_ID = 1
SQL = "SELECT name, version, source FROM deb_packages"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench results", description=__doc__)
    parser.add_argument("--results", type=int, default=100_000, help="stored answers")
    parser.add_argument("--rows", type=int, default=3, help="rows per answer")
    parser.add_argument("--per-page", type=int, default=1000)
    parser.add_argument(
        "--sorted-pages",
        type=int,
        default=10,
        help="pages read ordered by wall time (each sorts the campaign in the store); 0: all",
    )
    parser.add_argument("--sample-ms", type=float, default=10.0)
    parser.add_argument("--database-url", default="", help="PostgreSQL URL (SQLite if empty)")
    args = parser.parse_args(argv)
    # what serve_command reads besides the database
    args.hold, args.interval = 1.0, 10
    return args


async def _populate(url: str, results: int, rows: int) -> None:
    """One finished campaign with `results` stored answers, written through the index."""
    from fleetwatch.index import Action, DocumentIndex, Write
    from fleetwatch.live.campaign_docs import (
        CAMPAIGN_KIND,
        RESULT_KIND,
        TARGETS_KIND,
        campaign_link,
        result_link,
        targets_link,
    )
    from fleetwatch.storage import Database

    db = Database(url)
    await db.migrate()
    index = DocumentIndex(db)
    await index.start()
    hosts = list(range(1, results + 1))
    past = "2026-01-01T00:00:00Z"  # expired: nothing is loaded into memory at start
    campaign = {
        "id": CAMPAIGN_ID,
        "query": SQL,
        "query_id": None,
        "user_id": 1,
        "status": "finished",
        "targets": {"hosts": [], "labels": [], "teams": [], "all": True},
        "totals": {"targeted": results, "responded": results},
        "created_at": past,
        "deadline": past,
        "expires_at": past,
        "finished_at": past,
    }
    await index.apply(
        [
            Write(
                Action.PUT,
                targets_link(CAMPAIGN_ID),
                TARGETS_KIND,
                {
                    "campaign_id": CAMPAIGN_ID,
                    "host_ids": hosts,
                    "online_host_ids": hosts,
                    "queue_offline": True,
                },
            ),
            Write(Action.PUT, campaign_link(CAMPAIGN_ID), CAMPAIGN_KIND, campaign),
        ]
    )
    rng = random.Random(1)
    batch: list[Write] = []
    for host_id in hosts:
        answer = [
            {"name": f"package-{host_id}-{i}", "version": f"1.{i}.{host_id % 97}", "source": "deb"}
            for i in range(rows)
        ]
        body = {
            "campaign_id": CAMPAIGN_ID,
            "campaignLink": campaign_link(CAMPAIGN_ID),
            "campaign_user_id": 1,
            "host_id": host_id,
            "hostname": f"host-{host_id:06d}",
            "team_id": None,
            "status": "complete",
            "error": None,
            "rows": answer,
            "columns": ["name", "version", "source"],
            "rows_count": rows,
            "stats": {
                "wall_time_ms": rng.randint(1, 2000),
                "user_time": rng.randint(0, 500),
                "system_time": rng.randint(0, 200),
                "memory": rng.randint(0, 50_000_000),
            },
            "bytes": 0,
            "truncated": False,
            "truncated_reason": None,
            "queued": False,
            "late": False,
            "received_at": past,
        }
        batch.append(Write(Action.POST, result_link(CAMPAIGN_ID, host_id), RESULT_KIND, body))
        if len(batch) == 2000:
            await index.apply(batch)
            batch = []
    if batch:
        await index.apply(batch)
    await db.dispose()


@contextmanager
def peak_rss(pid: int, every: float) -> Iterator[list[int]]:
    """Sample the process's VmRSS (KiB) every `every` seconds while the block runs; the
    list yielded holds [peak] when it ends."""
    out = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            out[0] = max(out[0], memory_kib(pid).get("VmRSS", 0))
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        done.set()
        sampler.join()
        out[0] = max(out[0], memory_kib(pid).get("VmRSS", 0))


def _export(client: httpx.Client, fmt: str) -> tuple[int, int]:
    """Bytes and lines of one streamed export."""
    size = lines = 0
    path = f"/api/v1/fleet/campaigns/{CAMPAIGN_ID}/results"
    with client.stream("GET", path, params={"format": fmt}) as reply:
        reply.raise_for_status()
        for chunk in reply.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return size, lines


def _pages(
    client: httpx.Client, per_page: int, max_pages: int = 0, **order: str
) -> tuple[int, int]:
    """Pages and results read by following `next` (at most `max_pages` when not 0)."""
    pages = seen = 0
    after = None
    path = f"/api/v1/fleet/campaigns/{CAMPAIGN_ID}/results"
    while True:
        params: dict[str, Any] = {"per_page": per_page, **order}
        if after:
            params["after"] = after
        reply = client.get(path, params=params)
        reply.raise_for_status()
        body = reply.json()
        pages += 1
        seen += len(body["results"])
        after = body["next"]
        if after is None or pages == max_pages:
            return pages, seen


def main(argv: list[str]) -> int:
    args = _parse(argv)
    report = Report(
        "results",
        baseline="idle",
        params={"results": args.results, "rows": args.rows, "per_page": args.per_page},
    )
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-results-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        from fleetwatch.config import async_database_url

        url = (
            async_database_url(args.database_url)
            if args.database_url
            else f"sqlite+aiosqlite:///{data_dir / 'fleetwatch.db'}"
        )
        started = time.perf_counter()
        asyncio.run(_populate(url, args.results, args.rows))
        print(f"stored {args.results} results in {time.perf_counter() - started:.1f} s")
        port = free_port()
        with listening(serve_command(args, port, data_dir), port, Path(tmp) / "server.log") as proc:
            token = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/fleet/login",
                json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            ).json()["token"]
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,
            )
            every = args.sample_ms / 1000
            client.get(f"/api/v1/fleet/campaigns/{CAMPAIGN_ID}").raise_for_status()
            with peak_rss(proc.pid, every) as idle:
                time.sleep(2.0)
            report.add(Measurement("idle", idle[0] / 1024, "MiB peak", higher_is_better=False))
            phases: list[tuple[str, Callable[[], tuple[int, int]]]] = [
                ("export ndjson", lambda: _export(client, "ndjson")),
                ("export csv", lambda: _export(client, "csv")),
                ("pages by host", lambda: _pages(client, args.per_page)),
                (
                    "pages by wall time",
                    lambda: _pages(
                        client,
                        args.per_page,
                        args.sorted_pages,
                        order_key="wall_time_ms",
                        order_direction="desc",
                    ),
                ),
            ]
            for name, run in phases:
                with peak_rss(proc.pid, every) as peak:
                    began = time.perf_counter()
                    first, second = run()
                    elapsed = time.perf_counter() - began
                report.add(
                    Measurement(
                        name,
                        peak[0] / 1024,
                        "MiB peak",
                        higher_is_better=False,
                        extra={"seconds": round(elapsed, 2), "out": [first, second]},
                    )
                )
                print(f"  {name}: {elapsed:.1f} s, {first} / {second}")
            client.close()
    for m in report.measurements[1:]:
        report.notes.append(
            f"{m.name}: +{m.value - report.get('idle').value:.1f} MiB over idle in "
            f"{m.extra['seconds']} s ({m.extra['out'][0]} bytes or pages, "
            f"{m.extra['out'][1]} lines or results)"
        )
    report.print()
    report.save()
    return 0
