"""`fleetwatch simulate`: N simulated osquery hosts against a server, with a live status line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from fleetwatch.cli.root import app
from fleetwatch.sim import (
    AgentFlags,
    Churn,
    ChurnError,
    Fleet,
    FleetTotals,
    PlatformSpecError,
    UrlError,
)

HOST_IDENTIFIERS = ("hostname", "uuid", "instance")
CaFileOpt = typer.Option(
    None, "--ca-file", help="PEM CA to verify an https:// server (osquery's tls_server_certs)."
)


def fail(message: str) -> typer.Exit:
    """Print a usage error and return the exit to raise (status 2)."""
    typer.echo(f"fleetwatch simulate: {message}", err=True)
    return typer.Exit(2)


def build_fleet(
    *,
    server: str,
    enroll_secret: str,
    hosts: int,
    platforms: str | None,
    seed: int,
    ca_file: Path | None,
    churn: Churn,
    flags: AgentFlags,
    start_period: float | None,
) -> Fleet:
    """The fleet for these options; a bad option raises typer.Exit(2) with a message."""
    if hosts < 1:
        raise fail(f"--hosts must be at least 1, not {hosts}")
    if not enroll_secret:
        raise fail("--enroll-secret (or FLEETWATCH_ENROLL_SECRET) must not be empty")
    if start_period is None:
        start_period = min(30.0, hosts / 500)  # about 500 enrollments a second
    if start_period < 0:
        raise fail("--start-period must not be negative")
    try:
        return Fleet(
            server,
            enroll_secret,
            hosts,
            seed=seed,
            platforms=platforms,
            ca_file=ca_file,
            flags=flags,
            churn=churn,
            start_period=start_period,
        )
    except (UrlError, PlatformSpecError) as exc:
        raise fail(str(exc)) from None


def status_text(totals: FleetTotals, rate: float) -> Text:
    """The one-line status: enrolled / online / requests per second / errors."""
    text = Text()
    text.append(f"enrolled {totals.enrolled:,}/{totals.hosts:,}", style="bold green")
    text.append(f" · online {totals.online:,}")
    text.append(f" · {rate:,.1f} req/s")
    text.append(f" · answered {totals.queries_answered:,}")
    text.append(f" · errors {totals.errors:,}", style="red" if totals.errors else "")
    if totals.last_error:
        text.append(f" (last: {totals.last_error[:80]})", style="dim")
    return text


async def run_fleet(fleet: Fleet, duration: float | None, console: Console) -> FleetTotals:
    """Run until `duration` passes or SIGINT/SIGTERM, showing the status; then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    deadline = None if duration is None else time.monotonic() + duration
    await fleet.start()
    last_requests, last_time = 0, time.monotonic()
    live = (
        Live(console=console, auto_refresh=False, transient=False) if console.is_terminal else None
    )
    interval = 1.0 if live else 5.0
    try:
        if live:
            live.start()
        while not stop.is_set():
            timeout = interval
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            now = time.monotonic()
            totals = fleet.totals()
            rate = (totals.requests - last_requests) / max(1e-6, now - last_time)
            last_requests, last_time = totals.requests, now
            if live:
                live.update(status_text(totals, rate), refresh=True)
            else:
                console.print(status_text(totals, rate))
            if deadline is not None and now >= deadline:
                break
    finally:
        if live:
            live.stop()
        await fleet.stop()
    return fleet.totals()


def run_async(coro: Coroutine[Any, Any, FleetTotals]) -> FleetTotals:
    """Run on uvloop when available (cheaper per request), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    result: FleetTotals = uvloop.run(coro)
    return result


@app.command()
def simulate(
    server: str = typer.Option(..., "--server", help="Server URL, http://... or https://..."),
    enroll_secret: str = typer.Option(
        ..., "--enroll-secret", envvar="FLEETWATCH_ENROLL_SECRET", help="Enroll secret."
    ),
    hosts: int = typer.Option(10, "--hosts", help="Number of simulated hosts."),
    platforms: str | None = typer.Option(
        None, "--platforms", help="Weights, e.g. darwin=3,windows=2,ubuntu=4,centos=1."
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same hosts and same behaviour."),
    ca_file: Path | None = CaFileOpt,
    offline_fraction: float = typer.Option(
        0.0, "--offline-fraction", help="Share of hosts offline at any moment (0-1)."
    ),
    flap: float = typer.Option(
        0.0, "--flap", help="Mean seconds between a host going offline/online; 0 = never back."
    ),
    query_fail_prob: float = typer.Option(
        0.0, "--query-fail-prob", help="Chance a distributed query fails (0-1)."
    ),
    query_delay: float = typer.Option(
        0.0, "--query-delay", help="A distributed query takes up to this many extra seconds."
    ),
    logger_tls_compress: bool = typer.Option(
        False, "--logger-tls-compress", help="gzip log bodies (Content-Encoding: gzip)."
    ),
    distributed_interval: float = typer.Option(
        10.0, "--distributed-interval", help="Seconds between reads until the config sets it."
    ),
    logger_tls_period: float = typer.Option(
        10.0, "--logger-tls-period", help="Seconds between log flushes until the config sets it."
    ),
    config_refresh: float = typer.Option(
        60.0, "--config-refresh", help="Seconds between config fetches; 0 = only at start."
    ),
    host_identifier: str = typer.Option(
        "hostname", "--host-identifier", help="hostname, uuid or instance."
    ),
    start_period: float | None = typer.Option(
        None, "--start-period", help="Spread host start-up over this many seconds."
    ),
    duration: float | None = typer.Option(
        None, "--duration", help="Stop after this many seconds (default: until Ctrl-C)."
    ),
) -> None:
    """Run simulated osquery hosts that enroll, check in and answer queries with real SQL."""
    if host_identifier not in HOST_IDENTIFIERS:
        raise fail(f"--host-identifier must be one of {', '.join(HOST_IDENTIFIERS)}")
    for name, value in (
        ("--distributed-interval", distributed_interval),
        ("--logger-tls-period", logger_tls_period),
    ):
        if not value > 0:
            raise fail(f"{name} must be a positive number of seconds")
    if config_refresh < 0 or (duration is not None and duration < 0):
        raise fail("--config-refresh and --duration must not be negative")
    try:
        churn = Churn(
            offline_fraction=offline_fraction,
            flap=flap,
            query_fail_prob=query_fail_prob,
            query_delay=query_delay,
        )
    except ChurnError as exc:
        raise fail(str(exc)) from None
    flags = AgentFlags(
        distributed_interval=distributed_interval,
        logger_tls_period=logger_tls_period,
        logger_tls_compress=logger_tls_compress,
        config_refresh=config_refresh,
        host_identifier=host_identifier,
    )
    fleet = build_fleet(
        server=server,
        enroll_secret=enroll_secret,
        hosts=hosts,
        platforms=platforms,
        seed=seed,
        ca_file=ca_file,
        churn=churn,
        flags=flags,
        start_period=start_period,
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    console.print(
        f"fleetwatch simulate: {len(fleet.hosts):,} hosts ({_mix(fleet)}) against "
        f"{fleet.server.url}; Ctrl-C stops",
        soft_wrap=True,
    )
    totals = run_async(run_fleet(fleet, duration, console))
    console.print(
        f"stopped: {totals.enrolled:,}/{totals.hosts:,} enrolled, {totals.requests:,} requests, "
        f"{totals.queries_answered:,} queries answered, {totals.errors:,} errors"
    )


def _mix(fleet: Fleet) -> str:
    counts: dict[str, int] = {}
    for host in fleet.hosts:
        counts[host.profile.platform.name] = counts.get(host.profile.platform.name, 0) + 1
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
