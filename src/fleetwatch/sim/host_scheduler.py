"""A simulated agent's scheduler: scheduled queries on their (splayed) intervals, pack
discovery, decorators, and differential results in osquery's log formats."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from fleetwatch.sim.agent_config import AgentConfig, ScheduledQuery
from fleetwatch.sim.engine import QueryResult
from fleetwatch.sim.flags import AgentFlags
from fleetwatch.sim.logs import (
    ERROR,
    LineContext,
    LogBuffer,
    result_batch,
    result_events,
    snapshot_lines,
)
from fleetwatch.sim.scheduler import Schedule, next_run, row_bytes

#: osquery re-checks pack discovery queries this often (pack_refresh_interval).
PACK_REFRESH = 3600.0


class HostScheduler:
    """The part of `SimHost` that runs its scheduled queries and decorators."""

    flags: AgentFlags
    config: AgentConfig | None
    schedule: Schedule
    logs: LogBuffer
    _schedule_changed: asyncio.Event
    _decorations: dict[str, dict[str, str]]
    _pack_active: dict[str, tuple[float, bool]]

    if TYPE_CHECKING:

        @property
        def host_identifier(self) -> str: ...

        def query(self, sql: str) -> QueryResult: ...

        def _status(self, severity: int, filename: str, line: int, message: str) -> None: ...

    async def _schedule_loop(self) -> None:
        while True:
            self._schedule_changed.clear()
            due = self._next_schedule_time()
            if due is None:
                await self._schedule_changed.wait()
                continue
            delay = due - time.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._schedule_changed.wait(), delay)
                    continue  # the config changed: recompute
            self.run_due(time.time())

    def _next_schedule_time(self) -> float | None:
        times = []
        due = self.schedule.next_due()
        if due is not None:
            times.append(due)
        if self.config is not None and self.config.decorators.interval:
            now = time.time()
            times.extend(next_run(now, every) for every, _ in self.config.decorators.interval)
        return min(times) if times else None

    def run_due(self, now: float) -> None:
        """Run the scheduled queries (and interval decorators) due at `now`."""
        if self.config is not None:
            for every, queries in self.config.decorators.interval:
                if int(now) % every == 0:
                    self._decorations["interval"].update(self._decorate(queries))
        for name in self.schedule.due(now):
            self._run_scheduled(name, self.schedule.queries[name], now)

    def _run_scheduled(self, name: str, query: ScheduledQuery, now: float) -> None:
        if query.pack is not None and not self._pack_runs(query, now):
            return
        if self.config is not None and self.config.decorators.always:
            self._decorations["always"] = self._decorate(self.config.decorators.always)
        result = self.query(query.sql)
        if not result.ok:
            self._status(
                ERROR,
                "scheduler.cpp",
                107,
                f"Error executing scheduled query {name}: {result.error}",
            )
            return
        state = self.schedule.states[name]
        rows = [row_bytes(row) for row in result.rows]
        ctx = self._line_context(now)
        flags = self.flags
        if query.snapshot:
            lines = snapshot_lines(
                ctx, name, state.epoch, state.counter, rows, flags.logger_snapshot_event_type
            )
        else:
            diff = state.record(rows)
            if diff.empty:
                return
            removed = diff.removed if query.removed else []
            if flags.logger_event_type:
                lines = result_events(ctx, name, state.epoch, state.counter, diff.added, removed)
            else:
                lines = [result_batch(ctx, name, state.epoch, state.counter, diff.added, removed)]
        self.logs.add_results(lines)

    def _pack_runs(self, query: ScheduledQuery, now: float) -> bool:
        assert query.pack is not None
        cached = self._pack_active.get(query.pack)
        if cached is not None and now - cached[0] < PACK_REFRESH:
            return cached[1]
        active = True
        for sql in query.discovery:
            result = self.query(sql)
            if not result.ok or not result.rows:
                active = False
                break
        self._pack_active[query.pack] = (now, active)
        return active

    def _decorate(self, queries: tuple[str, ...]) -> dict[str, str]:
        decorations: dict[str, str] = {}
        for sql in queries:
            result = self.query(sql)
            if result.ok and result.rows:
                decorations.update(result.rows[0])
        return decorations

    @property
    def decorations(self) -> dict[str, str]:
        return {
            **self._decorations["load"],
            **self._decorations["interval"],
            **self._decorations["always"],
        }

    def _line_context(self, now: float) -> LineContext:
        return LineContext(
            self.host_identifier, int(now), self.decorations, self.flags.decorations_top_level
        )
