"""Memory soak: long-polling lean hosts, a campaign on all of them every few seconds, RSS over time.

`python -m bench soak` (defaults: `--hosts 3000 --every 15 --minutes 30 --sample 30
--warmup 10`). The processes are those of `python -m bench fleet` (bench/bench_fleet.py):
`python -m fleetwatch serve` (the real CLI: GC tuning and the heap trimmer included; SQLite
in a temp dir unless `--database-url`), `--distributed-hold H`, and the lean hosts in one
process (bench/_lean_agents.py). Once the fleet settled, a campaign on all hosts starts
every `--every` seconds (each watched on its stream until every online host's result
arrived, as in `bench fleet`), for `--minutes`; a thread reads the server's RSS (VmRSS,
/proc) every `--sample` seconds.

The baseline is the RSS at the end of the warm-up (`--warmup` minutes of campaigns): after
it, RSS must stay flat. It reports the samples, the RSS at warm-up end, at the end and its
peak, and the least-squares slope of the post-warm-up samples in MiB per hour and KiB per
campaign (before the fixes of issue 17 item 6: about 0.5 MiB per 3,000-result campaign).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._harness import Measurement, Report, format_table
from bench._lean_agents import raise_open_file_limit
from bench._lean_fleet import Agents, admin_client, run_campaign, serve_command, settle, shown
from bench._processes import free_port, listening, memory_kib


@dataclass
class Sample:
    """One RSS reading: minutes since the first campaign, MiB, campaigns finished."""

    minute: float
    rss_mib: float
    campaigns: int


@dataclass
class Soak:
    """Everything one soak measured."""

    args: argparse.Namespace
    command: list[str]
    settled_mib: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    campaigns: int = 0
    answered: int = 0
    missing: int = 0
    peak_mib: float = 0.0

    def after_warmup(self) -> list[Sample]:
        return [s for s in self.samples if s.minute >= self.args.warmup]

    def slope_mib_per_hour(self) -> float:
        """Least-squares slope of RSS over the post-warm-up samples."""
        points = self.after_warmup()
        if len(points) < 2:
            return 0.0
        xs = [p.minute / 60 for p in points]
        ys = [p.rss_mib for p in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


class Sampler(threading.Thread):
    """Reads the server's RSS every `interval` seconds once started."""

    def __init__(self, soak: Soak, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.soak, self.pid, self.interval = soak, pid, interval
        self.started_at = time.monotonic()
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            self.take()
            if self.stopping.wait(self.interval):
                return

    def take(self) -> None:
        rss = memory_kib(self.pid).get("VmRSS", 0) / 1024
        minute = (time.monotonic() - self.started_at) / 60
        self.soak.samples.append(Sample(minute, rss, self.soak.campaigns))
        self.soak.peak_mib = max(self.soak.peak_mib, rss)
        print(
            f"  {minute:5.1f} min: RSS {rss:.1f} MiB, {self.soak.campaigns} campaigns", flush=True
        )


async def _campaigns(soak: Soak, agents: Agents, server_pid: int, url: str) -> None:
    args = soak.args
    async with admin_client(url) as client:
        sampler = Sampler(soak, server_pid, args.sample)
        sampler.start()
        try:
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                started = time.monotonic()
                one = await run_campaign(client, agents, server_pid, args)
                soak.campaigns += 1
                soak.answered += one.answered
                soak.missing += max(0, one.online - one.answered)
                await asyncio.sleep(max(0.0, args.every - (time.monotonic() - started)))
        finally:
            sampler.stopping.set()
            sampler.join()
            sampler.take()


def measure(args: argparse.Namespace) -> Soak:
    """One soak (see the module docstring)."""
    raise_open_file_limit()
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-soak-") as tmp:
        port = free_port()
        command = serve_command(args, port, Path(tmp, "data"))
        soak = Soak(args, command)
        with Agents(port, 0) as agents:
            print(f"server: {shown(command)}", flush=True)
            with listening(command, port, Path(tmp, "server.log")) as server:
                print(f"starting {args.hosts:,} lean hosts", flush=True)
                agents.ask("start", args.hosts, args.start_rate)
                settle(agents, args)
                soak.settled_mib = memory_kib(server.pid).get("VmRSS", 0) / 1024
                print(f"  settled: RSS {soak.settled_mib:.1f} MiB", flush=True)
                url = f"http://127.0.0.1:{port}"
                asyncio.run(_campaigns(soak, agents, server.pid, url))
                agents.close()
    return soak


def report(soak: Soak) -> Report:
    args = soak.args
    rep = Report(
        bench="soak",
        baseline="RSS at warm-up end",
        params={
            "hosts": args.hosts,
            "every_s": args.every,
            "minutes": args.minutes,
            "warmup_min": args.warmup,
            "backend": "postgresql" if args.database_url else "sqlite",
            "queue_offline": args.queue_offline,
        },
    )
    after = soak.after_warmup()
    warm = after[0].rss_mib if after else 0.0
    end = soak.samples[-1].rss_mib if soak.samples else 0.0
    slope = soak.slope_mib_per_hour()
    per_hour_campaigns = 3600 / args.every
    rep.add(Measurement("RSS at warm-up end", warm, "MiB", False))
    rep.add(Measurement("RSS at end", end, "MiB", False))
    rep.add(Measurement("RSS peak", soak.peak_mib, "MiB", False))
    rep.add(Measurement("RSS settled, before campaigns", soak.settled_mib, "MiB", False))
    slope_m = rep.add(Measurement("slope after warm-up", slope, "MiB/hour", False))
    slope_m.extra["samples"] = [[round(s.minute, 2), round(s.rss_mib, 1)] for s in soak.samples]
    rep.notes.append(
        f"slope after warm-up {slope:+.2f} MiB/hour = {slope * 1024 / per_hour_campaigns:+.1f} KiB "
        f"per {args.hosts:,}-result campaign; end - warm-up end {end - warm:+.1f} MiB"
    )
    rep.notes.append(
        f"{soak.campaigns} campaigns, {soak.answered:,} results streamed, "
        f"{soak.missing} online hosts did not answer"
    )
    return rep


def samples_table(soak: Soak) -> str:
    return format_table(
        ["minute", "RSS MiB", "campaigns"],
        [[f"{s.minute:.1f}", f"{s.rss_mib:.1f}", str(s.campaigns)] for s in soak.samples],
    )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--hosts", type=int, default=3000, help="lean hosts")
    parser.add_argument("--every", type=float, default=15.0, help="s between campaign starts")
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of campaigns")
    parser.add_argument("--sample", type=float, default=30.0, help="s between RSS readings")
    parser.add_argument("--warmup", type=float, default=10.0, help="minutes of warm-up")
    parser.add_argument("--hold", type=float, default=5.0, help="--distributed-hold (s)")
    parser.add_argument("--interval", type=int, default=1, help="--distributed-interval (s)")
    parser.add_argument("--start-rate", type=float, default=300.0, help="hosts started per s")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="s to settle")
    parser.add_argument("--campaign-timeout", type=float, default=60.0, help="campaign timeout")
    parser.add_argument(
        "--queue-offline",
        action="store_true",
        help="campaigns as the API makes them by default: queued for offline hosts, kept "
        "(before issue 17's fix) until their queue expiry, a day",
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default SQLite)")
    args = parser.parse_args(argv)
    if args.hosts < 1 or args.every <= 0 or args.minutes <= 0 or args.sample <= 0:
        parser.error("--hosts, --every, --minutes and --sample must be positive")
    if not 0 <= args.warmup < args.minutes:
        parser.error("--warmup must be at least 0 and below --minutes")
    return args


def main(argv: list[str]) -> int:
    """Run once and print; 1 when an online host's result never arrived."""
    args = _parse(argv)
    random.seed(1)
    soak = measure(args)
    rep = report(soak)
    rep.print()
    print(samples_table(soak))
    print(f"results appended to {rep.save()}")
    return 1 if soak.missing else 0
