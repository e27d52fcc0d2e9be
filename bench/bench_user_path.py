"""A user's campaign creation while agents keep the event loop busy: turns waited, not CPU.

`python -m bench user_path` (options: `--burn-ms 2 --runs 30 --hosts 200`).

Why: with thousands of agents long-polling, every turn of the event loop carries their work,
and a user request waits one turn at each of its awaits (a database call, a thread hop, a
commit). What `POST /queries/run` costs a user under load is then its number of awaits times
the length of a turn, whatever its CPU. This measures that in one process, without sockets:
a callback rescheduled every turn burns `--burn-ms` of CPU (a loop saturated by agent
requests), while the server's own services (SQLite in a temp dir, `--hosts` enrolled hosts)
run what the route runs after parsing: `CampaignService.create` on one host (SQL check, id,
the campaign's two documents) and `ActivityService.record` (an id, the audit document). The
baseline, in the same run and loop, is one bare turn (`await asyncio.sleep(0)`); each figure
is also given in turns (its latency over a turn's), the machine-independent part.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tests.agent import details_for

from bench._harness import Measurement, Report
from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings, async_database_url
from fleetwatch.fleet.activities import ActivityService
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.targets import Targets
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.sql_check import check_live_sql_off_loop
from fleetwatch.storage import Database
from fleetwatch.storage.counters import next_id


class Busy:
    """A callback that burns `seconds` of CPU every turn of the loop (agents' work)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.turns = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._burn)

    def _burn(self) -> None:
        self.turns += 1
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._burn)

    def stop(self) -> None:
        self._stopped = True


async def _times(runs: int, step: Callable[[], Awaitable[object]], busy: Busy) -> list[float]:
    """Latency (s) and turns of each of `runs` calls of `step`."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        await step()
        out.append(time.perf_counter() - start)
    return out


async def measure(args: argparse.Namespace) -> Report:
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-user-") as tmp:
        db = Database(async_database_url(f"sqlite:///{Path(tmp) / 'fleet.db'}"))
        await db.migrate()
        index = DocumentIndex(db)
        await index.start()
        settings = Settings(data_dir=Path(tmp))
        hosts = HostService(db, index, settings)
        await hosts.load()
        first = None
        for i in range(args.hosts):
            state, _ = await hosts.enroll(f"h{i}", "9", details_for(f"h{i}", f"u{i}"), None)
            first = first or state
        assert first is not None
        campaigns = CampaignService(settings, index, hosts, HostWakeups())
        activities = ActivityService(index)
        one = Targets(hosts=frozenset({first.id}))

        async def create() -> None:
            campaign = await campaigns.create("SELECT 1", one, wake=False, queue_offline=False)
            await activities.record("live_query", None, {"campaign_id": campaign.id})

        async def turn() -> None:
            await asyncio.sleep(0)

        async def write() -> None:
            await index.write(Write(Action.PUT, "/bench/user-path", "bench:doc", {"n": 1}))

        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("one bare turn", turn),
            ("SQL check (checker thread)", lambda: check_live_sql_off_loop("SELECT 1")),
            ("next_id", lambda: next_id(db, "bench")),
            ("index write (group commit)", write),
            ("audit record", lambda: activities.record("live_query", None, {})),
            ("create campaign (1 host) + audit record", create),
        ]
        busy = Busy(args.burn_ms / 1000)
        results: dict[str, list[float]] = {}
        try:
            for name, step in steps:
                await step()  # warm: first use of each path
                results[name] = await _times(args.runs, step, busy)
        finally:
            busy.stop()
            await db.dispose()
    report = Report(
        bench="user_path",
        baseline="one bare turn",
        params={"burn_ms": args.burn_ms, "runs": args.runs, "hosts": args.hosts},
    )
    turn_s = statistics.median(results["one bare turn"])
    for name, values in results.items():
        median = statistics.median(values)
        report.add(
            Measurement(
                name,
                median * 1000,
                "ms (median)",
                higher_is_better=False,
                extra={"turns": round(median / turn_s, 1), "max_ms": max(values) * 1000},
            )
        )
        report.notes.append(
            f"{name}: {median / turn_s:.1f} turns (median), max {max(values) * 1000:.1f} ms"
        )
    return report


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench user_path", description=__doc__)
    parser.add_argument("--burn-ms", type=float, default=2.0, help="agents' CPU per loop turn")
    parser.add_argument("--runs", type=int, default=30, help="calls measured per step")
    parser.add_argument("--hosts", type=int, default=200, help="enrolled hosts")
    args = parser.parse_args(list(argv))
    report = asyncio.run(measure(args))
    report.print()
    print(f"results appended to {report.save()}")
    return 0
