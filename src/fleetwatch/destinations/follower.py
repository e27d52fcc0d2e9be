"""A destination that follows the change log from a durable cursor, so a restart or an outage
loses nothing that is still in the log.

Campaign result rows are not handed to a destination in memory when they are stored (a
restart, or a destination down past an in-memory queue, would lose them): each destination
reads the stored results from the change log after its cursor (`feed`), sends them in order,
and saves the cursor (`cursors`, under the name `destination:NAME`) only once the receiver
accepted everything read up to it. Delivery is therefore at least once and in log order; a
clean stop saves what was acknowledged, so a restart resends nothing that was accepted.

On a cluster exactly one node delivers: the holder of the lease `destination:NAME`. A node
that gains the lease reloads the cursor (the previous holder may have moved it), and stops
before its next send once the lease lapses.

Failures are the lane's: a retryable one is tried again after a doubling delay (`retry_base`
up to `retry_max`), nothing behind it is sent first; a batch refused for good, or one the sink
fails on with an error that is not a `DestinationError` (a bug, an event it cannot take), is
counted as failed, said in `last_error`, and passed. The log is read again at once while
there is more to read, else every `interval` (POLL_FLOOR at least). Rows older than the
destination's `retention` when read are dropped and counted, as are stretches of the log
trimmed (the server's `change_retention`) before they could be read: never silently.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fleetwatch.destinations.events import Event
from fleetwatch.destinations.lane import Lane
from fleetwatch.destinations.sinks import DestinationError
from fleetwatch.outbound.backoff import retry_delay
from fleetwatch.periodic import Periodic

log = logging.getLogger(__name__)

#: Seconds between two reads of the change log at least, while it has nothing more to read.
POLL_FLOOR = 1.0


@dataclass
class FeedBatch:
    """What one read of the log gave: the events to send, and how far it read."""

    events: list[Event]
    #: The last sequence read (with or without events: other campaigns' results).
    upto: int
    #: True when the read stopped at its limit: more may be waiting.
    full: bool


class Feed(Protocol):
    """The part of the change log one destination sends."""

    async def read(self, destination: str, after: int, limit: int) -> FeedBatch:
        """`destination`'s events of the changes after sequence `after`, in order, ending
        with the change that made them `limit` or more (`upto` is that change's sequence, so
        a cursor saved there is exact); a read may also stop early, `full`, after a bounded
        stretch of the log."""
        ...

    async def end(self) -> int:
        """The last sequence in the log now (where a new destination starts)."""
        ...

    async def first_retained(self) -> int:
        """The oldest sequence still in the log (0 when it is empty)."""
        ...


class Cursors(Protocol):
    """Durable positions by name (fleetwatch.storage.cursors.StreamCursors)."""

    async def load(self, name: str) -> int | None: ...

    async def save(self, name: str, seq: int) -> None: ...


class HasLease(Protocol):
    """The right to deliver, held by one node at a time (fleetwatch.bus.Lease)."""

    @property
    def held(self) -> bool: ...

    @property
    def token(self) -> int: ...


def cursor_name(destination: str) -> str:
    """The cursor's (and the lease's) name of a destination."""
    return f"destination:{destination}"


@dataclass
class Follower:
    """Delivers one destination's share of the change log (see the module docstring)."""

    lane: Lane
    feed: Feed
    cursors: Cursors
    lease: HasLease
    #: Events read at most per step, give or take one result's rows (default: the lane's
    #: batch size: the cursor moves, and is saved, after every batch).
    read_limit: int | None = None
    #: The sequence delivered through and saved (None until loaded under the lease).
    cursor: int | None = None
    #: Events read but not yet accepted, in order, and the sequence they end at.
    pending: deque[Event] = field(default_factory=deque)
    pending_upto: int = 0
    failures: int = 0
    #: Log changes trimmed before this destination could read them.
    skipped_changes: int = 0
    _token: int = 0
    _loop: Periodic | None = None

    @property
    def name(self) -> str:
        return cursor_name(self.lane.name)

    def start(self) -> None:
        if self._loop is None:
            self._loop = Periodic(
                f"fleetwatch-destination-{self.lane.name}",
                self.step,
                self._delay,
                failure=f"destination {self.lane.name} could not read or save its cursor",
                run_first=True,
            )
            self._loop.start()

    async def stop(self) -> None:
        """Stop after the current step (its acknowledged batch's cursor is saved)."""
        if self._loop is not None:
            await self._loop.stop()
            self._loop = None

    def _delay(self) -> float:
        if self.failures:
            return retry_delay(self.lane.retry_base, self.failures, self.lane.retry_max)
        # Polling the log is a query: not faster than POLL_FLOOR while nothing is waiting (a
        # step that read a full page pokes the loop, so a backlog is sent without pause).
        return max(self.lane.interval, POLL_FLOOR)

    async def step(self) -> None:
        """Read what is new (unless a batch is still unsent), send it, save the cursor."""
        if not self.lease.held:
            self._forget()
            return
        if self.cursor is None or self.lease.token != self._token:
            await self._load()
        assert self.cursor is not None
        if not self.pending:
            full = await self._read()
            if not self.pending:
                if self.pending_upto > self.cursor:
                    await self._save(self.pending_upto)
                if full and self._loop is not None:
                    self._loop.poke()
                return
        else:
            full = False
        self._expire()
        if await self._send() and full and self._loop is not None:
            self._loop.poke()

    # --- steps ---------------------------------------------------------------------------

    def _forget(self) -> None:
        """Another node delivers now: what this one read is its to send."""
        self.cursor = None
        self.pending.clear()
        self.failures = 0

    async def _load(self) -> None:
        self.pending.clear()
        self.failures = 0
        self._token = self.lease.token
        saved = await self.cursors.load(self.name)
        if saved is None:
            # A new destination starts at the end of the log, saved at once: what is stored
            # from now on reaches it even if the server stops before its first delivery.
            saved = await self.feed.end()
            await self.cursors.save(self.name, saved)
        self.cursor = self.pending_upto = saved

    async def _read(self) -> bool:
        """Read the next events into `pending`; True when more may be waiting."""
        assert self.cursor is not None
        await self._skip_trimmed()
        limit = self.read_limit or self.lane.batch_size
        batch = await self.feed.read(self.lane.name, self.cursor, limit)
        if await self._skip_trimmed():
            # The log was trimmed under the read: it may have missed changes it should have
            # seen. The trimmed stretch is counted; read again from what is left.
            self.pending_upto = self.cursor
            return True
        self.pending_upto = max(batch.upto, self.cursor)
        self.pending.extend(batch.events)
        self._expire()
        return batch.full

    async def _skip_trimmed(self) -> bool:
        """Count and pass the changes after the cursor that left the log (change_retention)
        before they were read; True when there were any."""
        assert self.cursor is not None
        first = await self.feed.first_retained()
        if first <= self.cursor + 1:
            return False
        trimmed = first - 1 - self.cursor
        self.skipped_changes += trimmed
        self.lane.record_error(
            f"changes {self.cursor + 1}-{first - 1} left the change log (change_retention) "
            "before they were delivered"
        )
        log.warning(
            "destination %s: %d changes left the log before they were delivered",
            self.lane.name,
            trimmed,
        )
        self.cursor = first - 1
        return True

    def _expire(self) -> None:
        """Drop the pending events older than the retention (the destination stayed down)."""
        cutoff = time.time() - self.lane.retention
        old = 0
        while old < len(self.pending) and self.pending[old].time < cutoff:
            old += 1
        if old:
            self._take(old)
            self.lane.record_drop(
                old, f"they were not delivered within its retention ({self.lane.retention:g} s)"
            )

    async def _send(self) -> bool:
        """Send the pending events in batches; True once all were accepted (cursor saved)."""
        lane = self.lane
        while self.pending:
            if not self.lease.held:
                self._forget()
                return False
            count = min(lane.batch_size, len(self.pending))
            batch: Sequence[Event] = [self.pending[i] for i in range(count)]
            try:
                refused = await lane.sink.send(batch)
            except DestinationError as exc:
                lane.record_error(str(exc))
                if exc.retryable:
                    self.failures += 1
                    return False
                log.warning("destination %s refused %d events: %s", lane.name, count, exc)
                self._take(count)
                lane.record("failed", count)
                continue
            except Exception as exc:  # a bug: the same batch would fail the same way for ever
                self._take(count)
                lane.record_bug(count, exc)
                continue
            self._take(count)
            self.failures = 0
            lane.record_sent(count, refused)
        self.failures = 0
        await self._save(self.pending_upto)
        return True

    def _take(self, count: int) -> None:
        for _ in range(count):
            self.pending.popleft()

    async def _save(self, seq: int) -> None:
        if not self.lease.held:
            return  # the new holder has its own position; ours would only be older
        await self.cursors.save(self.name, seq)
        self.cursor = seq
