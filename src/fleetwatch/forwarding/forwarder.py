"""Forwarding acknowledged osquery logs to outside destinations, without blocking agents.

`submit` is called once a log batch is stored (and so acknowledged to the agent). It
serialises the lines once and puts them on each destination's bounded queue without
waiting: a slow or failing destination fills its own queue, never the agent's request and
never another destination. A batch that does not fit is dropped, and a drop is never
silent: it is counted (`fleetwatch_log_forward_lines{outcome="dropped"}`) and logged, as is
a batch the destination refused after its retries (`outcome="failed"`).

Each line is the osquery log item as the agent sent it, plus the `host_id` it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from fleetwatch.forwarding.destinations import Destination, DestinationError
from fleetwatch.ops.metrics import Metrics

log = logging.getLogger(__name__)

#: Lines written in one destination call at most (batches of one type are merged up to it).
BATCH_LINES = 1000
#: Seconds between two warnings about drops of one destination (the counter has them all).
WARN_EVERY = 10.0


def serialise(host_id: int, item: Any) -> bytes:
    """One forwarded line: the item as sent, with the host id it came from."""
    if isinstance(item, dict):
        line = {**item, "host_id": host_id}
    else:
        line = {"host_id": host_id, "raw": item}
    return orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS, default=str)


@dataclass
class _Lane:
    """One destination with its queue and worker."""

    destination: Destination
    queue: asyncio.Queue[tuple[str, list[bytes]]] = field(default_factory=asyncio.Queue)
    queued: int = 0
    dropped_since_warning: int = 0
    last_warning: float = 0.0
    worker: asyncio.Task[None] | None = None


class LogForwarder:
    """Per-destination bounded queues of log lines and their delivery workers."""

    def __init__(
        self, destinations: Sequence[Destination], queue_limit: int, metrics: Metrics
    ) -> None:
        self.queue_limit = queue_limit
        self.metrics = metrics
        self._lanes = [_Lane(d) for d in destinations]

    @property
    def destinations(self) -> list[Destination]:
        return [lane.destination for lane in self._lanes]

    def queue_depths(self) -> dict[str, int]:
        """Lines waiting per destination name."""
        return {lane.destination.name: lane.queued for lane in self._lanes}

    def start(self) -> None:
        for lane in self._lanes:
            if lane.worker is None:
                lane.worker = asyncio.create_task(
                    self._run(lane), name=f"fleetwatch-forward-{lane.destination.name}"
                )

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what is queued (up to `drain_timeout` s), then stop; the rest is a drop."""
        deadline = time.monotonic() + drain_timeout
        for lane in self._lanes:
            while lane.queued and time.monotonic() < deadline and lane.worker is not None:
                await asyncio.sleep(0.02)
        for lane in self._lanes:
            if lane.worker is not None:
                lane.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.worker
                lane.worker = None
            if lane.queued:
                self._count(lane, "dropped", lane.queued)
                log.warning(
                    "log forwarding to %s: %d lines still queued at shutdown were dropped",
                    lane.destination.name,
                    lane.queued,
                )
                lane.queued = 0
            await lane.destination.close()

    def submit(self, host_id: int, log_type: str, items: Sequence[Any]) -> None:
        """Queue a stored batch for every destination; never waits (see the module doc)."""
        if not items or not self._lanes:
            return
        lines = [serialise(host_id, item) for item in items]
        for lane in self._lanes:
            if lane.queued + len(lines) > self.queue_limit:
                self._drop(lane, len(lines))
                continue
            lane.queued += len(lines)
            lane.queue.put_nowait((log_type, lines))

    def _drop(self, lane: _Lane, count: int) -> None:
        self._count(lane, "dropped", count)
        lane.dropped_since_warning += count
        now = time.monotonic()
        if now - lane.last_warning >= WARN_EVERY:
            log.warning(
                "log forwarding to %s is behind (%d lines queued, limit %d): dropped %d lines",
                lane.destination.name,
                lane.queued,
                self.queue_limit,
                lane.dropped_since_warning,
            )
            lane.last_warning = now
            lane.dropped_since_warning = 0

    def _count(self, lane: _Lane, outcome: str, count: int) -> None:
        self.metrics.forwarded_lines.labels(lane.destination.name, outcome).inc(count)

    async def _run(self, lane: _Lane) -> None:
        pending: tuple[str, list[bytes]] | None = None
        while True:
            log_type, lines = pending or await lane.queue.get()
            pending = None
            # Merge what else is queued of the same type, up to a batch.
            while len(lines) < BATCH_LINES and not lane.queue.empty():
                next_type, more = lane.queue.get_nowait()
                if next_type != log_type:
                    pending = (next_type, more)
                    break
                lines = lines + more
            try:
                await lane.destination.send(log_type, lines)
                self._count(lane, "written", len(lines))
            except DestinationError as exc:
                self._count(lane, "failed", len(lines))
                log.warning(
                    "log forwarding to %s failed; %d %s lines lost: %s",
                    lane.destination.name,
                    len(lines),
                    log_type,
                    exc,
                )
            except asyncio.CancelledError:
                self._count(lane, "dropped", len(lines))
                log.warning(
                    "log forwarding to %s stopped with %d lines in flight; they were dropped",
                    lane.destination.name,
                    len(lines),
                )
                raise
            except Exception:  # a bug must not stop forwarding for good
                self._count(lane, "failed", len(lines))
                log.exception("log forwarding to %s failed", lane.destination.name)
            finally:
                lane.queued -= len(lines)
