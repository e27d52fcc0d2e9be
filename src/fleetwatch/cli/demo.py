"""`fleetwatch demo`: a server on SQLite, N simulated hosts, the inventory and a live query.

Everything runs in this process: the server on its own thread (as `fleetwatch serve` would),
the simulated fleet on the main event loop. The admin credentials and enroll secret are taken
from FLEETWATCH_ADMIN_EMAIL / FLEETWATCH_ADMIN_PASSWORD / FLEETWATCH_ENROLL_SECRET or made up
and kept in the data directory, so a second run on the same directory can still log in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from fleetwatch.cli.root import app
from fleetwatch.cli.settings_options import build_settings
from fleetwatch.config import Settings
from fleetwatch.server import uvicorn_config
from fleetwatch.sim import Fleet

DEMO_QUERY = (
    "SELECT s.hostname, o.name AS os, o.version, "
    "(SELECT count(*) FROM processes) AS processes, "
    "(SELECT count(*) FROM users WHERE uid >= 500) AS people FROM system_info s, os_version o"
)
#: The demo's policies (name, SQL): the simulated hosts' own tables make some pass, some fail.
DEMO_POLICIES = (
    ("No web server in the clear (port 80)", "SELECT 1 WHERE NOT EXISTS "
     "(SELECT 1 FROM listening_ports WHERE port = 80)"),
    ("Rebooted in the last 7 days", "SELECT 1 FROM uptime WHERE days < 7"),
)  # fmt: skip
CREDENTIALS_FILE = "demo-credentials.json"
DataDirOpt = typer.Option(
    Path("./fleetwatch-demo"), "--data-dir", help="Where the demo's SQLite database lives."
)


@dataclass
class Credentials:
    email: str
    password: str
    enroll_secret: str


def demo_credentials(data_dir: Path) -> Credentials:
    """From the environment, else the data directory's saved ones, else new ones (saved)."""
    path = data_dir / CREDENTIALS_FILE
    saved: dict[str, str] = {}
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            saved = json.loads(path.read_text())
    creds = Credentials(
        email=os.environ.get("FLEETWATCH_ADMIN_EMAIL") or saved.get("email") or "admin@example.com",
        password=os.environ.get("FLEETWATCH_ADMIN_PASSWORD")
        or saved.get("password")
        or secrets.token_urlsafe(12),
        enroll_secret=os.environ.get("FLEETWATCH_ENROLL_SECRET")
        or saved.get("enroll_secret")
        or secrets.token_urlsafe(24),
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds.__dict__, indent=2) + "\n")
    path.chmod(0o600)
    return creds


def pick_port(wanted: int) -> int:
    """`wanted` if it is free (0 = any), else a free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """The fleetwatch server on a background thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn_config(settings)
        config.access_log = False  # the demo's terminal shows results, not every check-in
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="fleetwatch-demo-server")
        scheme = "https" if settings.uses_tls else "http"
        self.url = f"{scheme}://127.0.0.1:{settings.port}"

    async def start(self, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server failed to start; see the messages above")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {timeout:g} s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


async def login(client: httpx.AsyncClient, creds: Credentials) -> str:
    reply = await client.post(
        "/api/v1/fleet/login", json={"email": creds.email, "password": creds.password}
    )
    if reply.status_code != 200:
        raise RuntimeError(
            f"cannot log in as {creds.email}: {reply.text}. This data directory has another "
            "admin: set FLEETWATCH_ADMIN_EMAIL/PASSWORD or use a fresh --data-dir"
        )
    token: str = reply.json()["token"]
    return token


async def inventory(client: httpx.AsyncClient, hosts: int, timeout: float) -> list[dict[str, Any]]:
    """The host list once every host has reported its OS (detail queries answered)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await client.get("/api/v1/fleet/hosts", params={"per_page": 500})
        listed: list[dict[str, Any]] = reply.json().get("hosts", [])
        if len([h for h in listed if h.get("os_version")]) >= hosts:
            return listed
        if time.monotonic() > deadline:
            return listed
        await asyncio.sleep(0.3)


def inventory_table(hosts: list[dict[str, Any]], limit: int = 25) -> Table:
    table = Table(title=f"Inventory ({len(hosts)} hosts)", title_justify="left")
    for column in ("id", "hostname", "platform", "os", "osquery", "ip", "status"):
        table.add_column(column)
    for host in hosts[:limit]:
        table.add_row(
            str(host.get("id", "")),
            str(host.get("hostname", "")),
            str(host.get("platform", "")),
            str(host.get("os_version", "")),
            str(host.get("osquery_version", "")),
            str(host.get("primary_ip", "")),
            str(host.get("status", "")),
        )
    if len(hosts) > limit:
        table.caption = f"... and {len(hosts) - limit} more"
    return table


async def live_query(client: httpx.AsyncClient, console: Console, timeout: float) -> int:
    """Run DEMO_QUERY on every host and stream the answers; returns hosts answered."""
    reply = await client.post(
        "/api/v1/fleet/queries/run", json={"query": DEMO_QUERY, "targets": [{"type": "all"}]}
    )
    if reply.status_code >= 300:
        console.print(f"[yellow]live query not available: {reply.text}[/]")
        return 0
    campaign = reply.json()["campaign"]
    campaign_id = campaign["id"]
    targeted = int(campaign.get("totals", {}).get("online") or 0) or None
    console.print(f"\n[bold]Live query[/] (campaign {campaign_id}): {DEMO_QUERY}")
    table = Table(title_justify="left")
    for column in ("hostname", "os", "version", "processes", "people", "status"):
        table.add_column(column)
    answered = 0
    progress = Progress(
        TextColumn("hosts answered"), BarColumn(), MofNCompleteColumn(), console=console
    )
    with progress:
        task = progress.add_task("answered", total=targeted)
        path = f"/api/v1/fleet/campaigns/{campaign_id}/events"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async with client.stream("GET", path, timeout=None) as stream:
                    async for message in _sse(stream):
                        kind, data = message.get("type"), message.get("data", {})
                        if kind == "totals":
                            total = data.get("online") or data.get("targeted")
                            progress.update(task, total=total)
                        elif kind == "result":
                            answered += 1
                            progress.update(task, completed=answered)
                            _add_result(table, data)
                        elif kind == "status" and data.get("status") != "running":
                            break
    console.print(table)
    return answered


async def demo_policies(
    client: httpx.AsyncClient, console: Console, hosts: int, timeout: float
) -> list[dict[str, Any]]:
    """Create DEMO_POLICIES (or find them, on a second run) and show their counts once every
    host answered (or the time is up)."""
    existing = {
        p["name"]: p
        for p in (await client.get("/api/v1/fleet/policies")).json().get("policies", [])
    }
    ids = []
    for name, sql in DEMO_POLICIES:
        if name in existing:
            ids.append(existing[name]["id"])
            continue
        reply = await client.post(
            "/api/v1/fleet/policies", json={"name": name, "query": sql, "interval": 60}
        )
        if reply.status_code >= 300:
            console.print(f"[yellow]policy not created: {reply.text}[/]")
            return []
        ids.append(reply.json()["policy"]["id"])
    policies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        policies = [(await client.get(f"/api/v1/fleet/policies/{i}")).json()["policy"] for i in ids]
        if all(p["unknown_host_count"] == 0 for p in policies):
            break
        await asyncio.sleep(0.2)
    table = Table(title="Policies (answered at check-in, counted live)", title_justify="left")
    for column in ("id", "policy", "passing", "failing", "unknown"):
        table.add_column(column)
    for p in policies:
        table.add_row(
            str(p["id"]),
            p["name"],
            str(p["passing_host_count"]),
            str(p["failing_host_count"]),
            str(p["unknown_host_count"]),
        )
    console.print(table)
    return policies


def _add_result(table: Table, result: dict[str, Any]) -> None:
    rows = result.get("rows") or [{}]
    for row in rows[:1]:
        table.add_row(
            str(result.get("hostname", row.get("hostname", ""))),
            str(row.get("os", "")),
            str(row.get("version", "")),
            str(row.get("processes", "")),
            str(row.get("people", "")),
            str(result.get("status", "")) + (f": {result['error']}" if result.get("error") else ""),
        )


async def _sse(stream: httpx.Response) -> Any:
    data: list[str] = []
    async for line in stream.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield orjson.loads("".join(data))
            data = []


async def run_demo(
    settings: Settings, creds: Credentials, hosts: int, seed: int, exit_after: bool
) -> int:
    console = Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = ServerThread(settings)
    console.print(
        f"fleetwatch demo: starting the server on {server.url} (data: {settings.data_dir})"
    )
    await server.start()
    fleet = Fleet(server.url, creds.enroll_secret, hosts, seed=seed, start_period=hosts / 200)
    try:
        await fleet.start()
        with Progress(
            TextColumn("hosts enrolled"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("enroll", total=hosts)
            deadline = time.monotonic() + 60 + hosts / 20
            while not stop.is_set() and time.monotonic() < deadline:
                enrolled = sum(1 for h in fleet.hosts if h.enrolled)
                progress.update(task, completed=enrolled)
                if enrolled >= hosts:
                    break
                await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            token = await login(client, creds)
            client.headers["Authorization"] = f"Bearer {token}"
            listed = await inventory(client, hosts, timeout=30)
            console.print(inventory_table(listed))
            answered = await live_query(client, console, timeout=30)
            console.print(f"{answered} of {hosts} hosts answered the live query.")
            await demo_policies(client, console, hosts, timeout=30)
        heading = (
            f"[bold]fleetwatch ran[/] at {server.url} and stops now (--exit-after-demo; "
            "leave it out to keep the server and hosts running)"
            if exit_after
            else f"[bold green]fleetwatch is running[/] at {server.url}"
        )
        console.print(
            f"\n{heading}\n"
            f"  open the UI: {server.url}/ui\n"
            f"  admin: {creds.email} / {creds.password}\n"
            f"  enroll secret: {creds.enroll_secret}\n"
            "  run a live query:\n"
            f"    TOKEN=$(curl -s {server.url}/api/v1/fleet/login -H 'Content-Type: "
            f'application/json\' -d \'{{"email": "{creds.email}", "password": '
            f"\"{creds.password}\"}}' | python3 -c 'import json,sys; "
            'print(json.load(sys.stdin)["token"])\')\n'
            f'    curl -s {server.url}/api/v1/fleet/queries/run -H "Authorization: Bearer '
            '$TOKEN" -H \'Content-Type: application/json\' -d \'{"query": "SELECT * FROM '
            'uptime", "targets": [{"type": "all"}], "wait": 10}\'\n'
            f"  more hosts: fleetwatch simulate --server {server.url} --enroll-secret "
            f"{creds.enroll_secret} --hosts 100 --seed 1",
            soft_wrap=True,
        )
        if not exit_after:
            console.print("Ctrl-C stops the server and the simulated hosts.")
            await stop.wait()
    finally:
        await fleet.stop()
        server.stop()
        console.print("fleetwatch demo: stopped.")
    return answered


@app.command()
def demo(
    hosts: int = typer.Option(50, "--hosts", help="Number of simulated hosts."),
    data_dir: Path = DataDirOpt,
    port: int = typer.Option(8412, "--port", help="Port (another free one if busy; 0 = any)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated fleet."),
    exit_after_demo: bool = typer.Option(
        False, "--exit-after-demo", help="Stop after the live query instead of running on."
    ),
) -> None:
    """Start a server on SQLite with N simulated hosts, show the inventory, run a live query."""
    if not 1 <= hosts <= 20_000:
        typer.echo("fleetwatch demo: --hosts must be between 1 and 20000", err=True)
        raise typer.Exit(2)
    if not 0 <= port <= 65535:
        typer.echo("fleetwatch demo: --port must be between 0 and 65535", err=True)
        raise typer.Exit(2)
    creds = demo_credentials(data_dir)
    settings = build_settings(
        host="127.0.0.1",
        port=pick_port(port),
        data_dir=data_dir,
        admin_email=creds.email,
        admin_password=creds.password,
        enroll_secret=creds.enroll_secret,
        log_level=os.environ.get("FLEETWATCH_LOG_LEVEL", "warning"),
    )
    try:
        asyncio.run(run_demo(settings, creds, hosts, seed, exit_after_demo))
    except RuntimeError as exc:
        typer.echo(f"fleetwatch demo: {exc}", err=True)
        raise typer.Exit(1) from None
