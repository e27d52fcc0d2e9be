"""One destination's bounded queue and the worker that delivers it, in order, at least once.

`put` never waits: events go on the queue, or are dropped and counted when it is full. The
worker takes up to `batch_size` events from the head (waiting up to `interval` for a batch
to fill), sends them and only then removes them: a batch that failed with a retryable error
is sent again, after a doubling delay (up to `retry_max`), before anything queued behind
it. So delivery is in order and at least once for as long as the destination comes back
within `retention`; events older than that are dropped while it stays down, and counted.
A batch the destination refuses for good is counted as failed and not sent again, as is one
the sink fails on with an error that is not a `DestinationError` (a bug, an event it cannot
take): retrying the same batch would fail the same way for ever.

The state (`sent`, `queued`, `failed`, `dropped`, `last_error`) is what
GET /api/v1/fleet/destinations shows; each outcome is also told to `on_outcome` (metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.destinations.events import Event
from fleetwatch.destinations.sinks import DestinationError, Refused, Sink
from fleetwatch.outbound.backoff import retry_delay

log = logging.getLogger(__name__)

#: Seconds between two warnings about drops of one destination (the counter has them all).
WARN_EVERY = 10.0

#: Told (destination name, outcome, events) for events sent, failed or dropped (metrics).
OnOutcome = Callable[[str, str, int], None]


@dataclass
class LaneState:
    """What a destination did since the server started."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_sent_at: float | None = None


@dataclass
class Lane:
    """A named destination: its sink, its queue and its worker (see the module docstring)."""

    name: str
    sink: Sink
    batch_size: int = 500
    interval: float = 1.0
    queue_limit: int = 100_000
    retention: float = 3600.0
    #: What GET /api/v1/fleet/destinations shows of its settings (no secret in it).
    description: dict[str, Any] = field(default_factory=dict)
    #: osquery log types it receives.
    log_types: frozenset[str] = frozenset()
    #: Campaigns and saved queries may name it (a `[destinations.NAME]` table); log
    #: forwarding's own lanes (`log_forward_dir`, `log_forward_url`) take osquery logs only.
    campaign_rows: bool = True
    on_outcome: OnOutcome | None = None
    retry_base: float = 0.5
    retry_max: float = 30.0
    state: LaneState = field(default_factory=LaneState)
    #: (time queued, event), oldest first.
    queue: deque[tuple[float, Event]] = field(default_factory=deque)
    #: Consecutive failed tries of the batch at the head.
    failures: int = 0
    worker: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _dropped_unwarned: int = 0
    _last_warning: float = 0.0

    def put(self, events: Sequence[Event]) -> None:
        """Queue events (never waits); what does not fit is dropped and counted."""
        room = self.queue_limit - len(self.queue)
        now = time.monotonic()
        for event in events[: max(0, room)]:
            self.queue.append((now, event))
        if len(events) > room:
            self.record_drop(len(events) - max(0, room), f"its queue is full ({self.queue_limit})")
        self._arrived.set()

    def start(self) -> None:
        if self.worker is None:
            self.worker = asyncio.create_task(
                self._run(), name=f"fleetwatch-destination-{self.name}"
            )

    async def stop(self, deadline: float) -> None:
        """Deliver what is queued until `deadline` (monotonic), then stop; the rest is dropped."""
        while self.queue and self.worker is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
            self.worker = None
        if self.queue:
            self.record_drop(
                len(self.queue), "the server stopped before they were delivered", force=True
            )
            self.queue.clear()
        await self.sink.close()

    def view(self) -> dict[str, Any]:
        """Its settings and state, as the API shows them."""
        state = self.state
        return {
            "name": self.name,
            **self.description,
            "osquery_logs": sorted(self.log_types),
            "sent": state.sent,
            "queued": len(self.queue),
            "failed": state.failed,
            "dropped": state.dropped,
            "retrying": self.failures > 0,
            "last_error": state.last_error,
            "last_error_at": _iso(state.last_error_at),
            "last_sent_at": _iso(state.last_sent_at),
        }

    # --- the worker ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self._arrived.clear()
                await self._arrived.wait()
            if len(self.queue) < self.batch_size and not self.failures:
                await self._fill()
            self._expire()
            count = min(self.batch_size, len(self.queue))
            if not count:
                continue
            batch = [self.queue[i][1] for i in range(count)]
            try:
                refused = await self.sink.send(batch)
            except DestinationError as exc:
                self.record_error(str(exc))
                if not exc.retryable:
                    self._take(count)
                    self.record("failed", count)
                    log.warning("destination %s refused %d events: %s", self.name, count, exc)
                    continue
                self.failures += 1
                await asyncio.sleep(retry_delay(self.retry_base, self.failures, self.retry_max))
                continue
            except Exception as exc:  # a bug: sending the same batch again cannot help
                self._take(count)
                self.record_bug(count, exc)
                continue
            self._take(count)
            self.failures = 0
            self.record_sent(count, refused)

    async def _fill(self) -> None:
        """Wait up to `interval` for a full batch."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                while len(self.queue) < self.batch_size:
                    self._arrived.clear()
                    await self._arrived.wait()

    def _expire(self) -> None:
        """Drop the events that waited longer than `retention` (the destination stayed down)."""
        cutoff = time.monotonic() - self.retention
        old = 0
        while old < len(self.queue) and self.queue[old][0] < cutoff:
            old += 1
        if old:
            self._take(old)
            self.record_drop(
                old, f"they were not delivered within its retention ({self.retention:g} s)"
            )

    def _take(self, count: int) -> None:
        for _ in range(count):
            self.queue.popleft()

    def record_error(self, reason: str) -> None:
        """Remember the last failure (shown as `last_error`)."""
        self.state.last_error = reason
        self.state.last_error_at = time.time()

    def record_sent(self, count: int, refused: Refused | None) -> None:
        """Count a batch of `count` events the sink took, of which it refused `refused`."""
        failed = refused.count if refused is not None else 0
        if refused is not None:
            self.record_error(refused.reason)
            self.record("failed", failed)
        self.state.last_sent_at = time.time()
        self.record("sent", count - failed)

    def record_bug(self, count: int, exc: Exception) -> None:
        """Count a batch lost to a sink error that is not a delivery failure (a bug: the same
        batch would fail the same way for ever, so it is passed, not retried)."""
        log.error("destination %s could not send %d events", self.name, count, exc_info=exc)
        self.record_error(f"{type(exc).__name__}: {exc}")
        self.record("failed", count)

    def record(self, outcome: str, count: int) -> None:
        """Count events `sent`, `failed` or `dropped` (and tell `on_outcome`)."""
        if not count:
            return
        if outcome == "sent":
            self.state.sent += count
        elif outcome == "failed":
            self.state.failed += count
        else:
            self.state.dropped += count
        if self.on_outcome is not None:
            self.on_outcome(self.name, outcome, count)

    def record_drop(self, count: int, why: str, force: bool = False) -> None:
        """Count dropped events and warn (at most every WARN_EVERY s unless `force`)."""
        self.record("dropped", count)
        self._dropped_unwarned += count
        now = time.monotonic()
        if force or now - self._last_warning >= WARN_EVERY:
            log.warning(
                "destination %s dropped %d events: %s (last error: %s)",
                self.name,
                self._dropped_unwarned,
                why,
                self.state.last_error,
            )
            self._last_warning = now
            self._dropped_unwarned = 0


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
