"""The check-in benchmarks' server process and fleet setup (bench_checkin, bench_policies).

`serve` runs `fleetwatch serve` with the bench-only routes (a bare JSON baseline and the SQL
statement counts) in a child process, `served` starts it and stops it; `enroll_all` enrolls
hosts and answers their detail queries, so later reads have nothing pending.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench._processes import stop_server, wait_ready

ENROLL_SECRET = "bench-checkin-secret"
READ_PATH = "/api/v1/osquery/distributed/read"
BARE_PATH = "/bench/bare"
BARE_BODY: dict[str, dict[str, str]] = {"queries": {}, "discovery": {}}


def serve(settings_kwargs: dict[str, Any], log_path: str) -> None:
    """Child process: `fleetwatch serve` plus the bench-only routes, until terminated."""
    import logging

    import uvicorn
    from sqlalchemy import event

    from fleetwatch.config import Settings
    from fleetwatch.responses import JsonResponse
    from fleetwatch.server import uvicorn_config
    from fleetwatch.services import Services

    # Server logs go to a file: the terminal is for the report.
    log_file = open(log_path, "a", encoding="utf-8")  # open for the process's life
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    logging.basicConfig(stream=log_file)

    settings = Settings(**settings_kwargs)
    config = uvicorn_config(settings)
    app = config.app
    services: Services = app.state.services  # type: ignore[union-attr]

    statements: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # SQLAlchemy's async engine runs this on the loop thread inside the awaiting task, so
        # the task tells a request's statements (uvicorn's run_asgi) from background work.
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        coro = task.get_coro() if task is not None else None
        origin = str(getattr(coro, "__qualname__", "?"))
        origin = "request" if origin.endswith("run_asgi") else origin
        words = statement.split()
        statements[f"{origin}: {' '.join(words[:3]) if words else '?'}"] += 1

    event.listen(services.db.engine.sync_engine, "before_cursor_execute", count)

    async def bare_endpoint() -> JsonResponse:
        """The baseline: a constant JSON body, nothing read, nothing looked up."""
        return JsonResponse(BARE_BODY)

    async def sql_counts() -> JsonResponse:
        return JsonResponse({"total": sum(statements.values()), "by_kind": dict(statements)})

    app.add_api_route(BARE_PATH, bare_endpoint, methods=["POST"])  # type: ignore[union-attr]
    app.add_api_route("/bench/sql", sql_counts, methods=["GET"])  # type: ignore[union-attr]
    # The baseline is matched first, so it pays no routing cost the check-in route pays:
    # routing past other routes is part of what a check-in costs in this app.
    routes = app.router.routes  # type: ignore[union-attr]
    routes.insert(0, routes.pop(-2))
    uvicorn.Server(config).run()


@contextmanager
def served(
    port: int, tmp: str, database_url: str | None, log_level: str, **more: Any
) -> Iterator[mp.process.BaseProcess]:
    """`serve` in a spawned process on 127.0.0.1:`port` (data and log in `tmp`, no hold,
    settings `more` besides), once ready; stopped at exit (the log's last lines printed)."""
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "data_dir": tmp,
        "database_url": database_url,
        "distributed_hold": 0.0,
        "enroll_secret": ENROLL_SECRET,
        "log_level": log_level,
        **more,
    }
    log_path = Path(tmp, "server.log")
    server = mp.get_context("spawn").Process(
        target=serve, args=(settings, str(log_path)), daemon=True
    )
    server.start()
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{port}", server))
        yield server
    finally:
        stop_server(server, log_path)


def details(i: int) -> dict[str, dict[str, str]]:
    uuid = f"00000000-0000-4000-8000-{i:012d}"
    return {
        "os_version": {"name": "Ubuntu", "version": "22.04.4 LTS", "platform": "ubuntu"},
        "osquery_info": {"version": "5.23.1", "uuid": uuid},
        "system_info": {"hostname": f"bench-{i:05d}", "uuid": uuid, "cpu_logical_cores": "4"},
    }


async def enroll_one(client: httpx.AsyncClient, i: int) -> str:
    enrolled = await client.post(
        "/api/v1/osquery/enroll",
        json={
            "enroll_secret": ENROLL_SECRET,
            "host_identifier": f"bench-host-{i:05d}",
            "platform_type": "9",
            "host_details": details(i),
        },
    )
    key = enrolled.json().get("node_key")
    if not isinstance(key, str):
        raise RuntimeError(f"enroll failed: {enrolled.status_code} {enrolled.text}")
    first = (await client.post(READ_PATH, json={"node_key": key})).json()
    queries: dict[str, str] = first.get("queries", {})
    if not queries:
        raise RuntimeError(f"the first read after enroll offered no detail queries: {first}")
    rows = {
        name: [{"name": "distributed_interval", "value": "1"}] if "flags" in name else []
        for name in queries
    }
    rows["fleet_detail_query_system_info"] = [details(i)["system_info"]]
    wrote = await client.post(
        "/api/v1/osquery/distributed/write",
        json={"node_key": key, "queries": rows, "statuses": {name: 0 for name in queries}},
    )
    if wrote.status_code != 200:
        raise RuntimeError(f"distributed/write failed: {wrote.status_code} {wrote.text}")
    again = (await client.post(READ_PATH, json={"node_key": key})).json()
    if again.get("queries"):
        raise RuntimeError(f"a read after answering the detail queries is not empty: {again}")
    return key


async def enroll_all(url: str, hosts: int, concurrency: int = 16) -> list[str]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with gate:
                return await enroll_one(client, i)

        return list(await asyncio.gather(*(one(i) for i in range(hosts))))
