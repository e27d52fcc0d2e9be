"""A simulated agent's logger plugin: status lines, and buffered result and status lines
sent every `logger_tls_period` (backing off after failures, at-least-once)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleetwatch.sim.flags import AgentFlags
from fleetwatch.sim.logs import WARNING, LineContext, LogBuffer, log_body, status_line
from fleetwatch.sim.profile import HostProfile
from fleetwatch.sim.protocol import logger_backoff
from fleetwatch.sim.stats import HostStats

log = logging.getLogger("fleetwatch.sim")


class HostLogger:
    """The part of `SimHost` that writes status lines and sends buffered logs."""

    profile: HostProfile
    flags: AgentFlags
    logs: LogBuffer
    stats: HostStats
    _online: asyncio.Event

    if TYPE_CHECKING:

        def _line_context(self, now: float) -> LineContext: ...

        async def _call(
            self,
            kind: str,
            channel: str,
            path: str,
            make_body: Callable[[str], bytes],
            attempts: int,
            compress: bool = False,
        ) -> tuple[dict[str, Any], bytes] | None: ...

    def _status(self, severity: int, filename: str, line: int, message: str) -> None:
        if severity >= WARNING:
            log.debug("simulated host %s: %s", self.profile.hostname, message)
        if self.flags.tls_disable_status_log:
            return
        self.logs.add_status(
            status_line(self._line_context(time.time()), severity, filename, line, message)
        )

    async def _logger_loop(self) -> None:
        failures = 0
        while True:
            flags = self.flags
            await asyncio.sleep(
                logger_backoff(flags.logger_tls_period, failures, flags.logger_tls_backoff_max)
            )
            if not self.logs or not self._online.is_set():
                continue
            failures = 0 if await self.flush_logs() else failures + 1

    async def flush_logs(self) -> bool:
        """Send up to logger_tls_max_lines buffered lines; False if any POST failed (those
        lines stay buffered, so delivery is at-least-once like osquery's)."""
        batch = self.logs.take(self.flags.logger_tls_max_lines)
        results_ok = not batch.results or await self._send_logs("result", batch.results)
        status_ok = not batch.statuses or await self._send_logs("status", batch.statuses)
        if not (results_ok and status_ok):
            self.logs.give_back(
                [] if results_ok else batch.results, [] if status_ok else batch.statuses
            )
        if results_ok:
            self.stats.result_lines_sent += len(batch.results)
        if status_ok:
            self.stats.status_lines_sent += len(batch.statuses)
        return results_ok and status_ok

    async def _send_logs(self, log_type: str, lines: list[bytes]) -> bool:
        reply = await self._call(
            "log",
            "logger",
            self.flags.logger_tls_endpoint,
            lambda key: log_body(key, log_type, lines),
            1,
            compress=self.flags.logger_tls_compress,
        )
        return reply is not None
