"""A stream (one registered query) and its subscribers' message iterators.

The mechanism and its guarantees are described in `fleetwatch.query.subscriptions`, whose
hub registers streams and feeds their subscribers; a subscription of a stream with
`squash_millis` passes its live notifications through a `Squasher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from fleetwatch.index.document import Change
from fleetwatch.index.store import DocumentIndex
from fleetwatch.query.matcher import CompiledQuery
from fleetwatch.query.spec import Query
from fleetwatch.query.squash import Squasher
from fleetwatch.query.stream_events import Event, StreamMode, StreamObserver, classify
from fleetwatch.query.stream_messages import (
    Closed,
    Current,
    Initial,
    Message,
    Notification,
    Resync,
)


@dataclass(eq=False)
class Stream:
    """One registered query and its subscribers."""

    key: str
    query: Query
    compiled: CompiledQuery
    mode: StreamMode
    observer: StreamObserver | None
    subscribers: set[Subscription] = field(default_factory=set)
    owned_by: Subscription | None = None
    #: Events buffered while the stream is catching up (None once live).
    pending: list[Event] | None = None
    closed: bool = False
    #: A subscriber's initial results are as of this sequence, followed by every change
    #: after it (TIME_SNAPSHOT + CONTINUOUS); None: as of the subscription.
    as_of: int | None = None
    #: Changes to one document within this many milliseconds go out as one (0: all).
    squash_millis: int = 0

    def classify(self, change: Change, matched_now: bool, matched_before: bool) -> Event | None:
        """The event `change` is for this stream, or None."""
        kind = classify(change.action, matched_now, matched_before)
        return None if kind is None else Event(change, kind, matched_before)

    def evaluate(self, change: Change) -> Event | None:
        """Match a change from scratch (replays): current and previous version."""
        now = self.compiled.matches(change.body)
        before = change.prev_body is not None and (
            (now or self.mode.evaluates_previous) and self.compiled.matches(change.prev_body)
        )
        return self.classify(change, now, before)


class SubscriptionHost(Protocol):
    """What a subscription needs of its hub."""

    index: DocumentIndex
    replay_batch: int
    #: Subscribers sent a resync so far.
    resyncs: int

    def detach(self, sub: Subscription) -> None:
        """Stop feeding `sub` (and close its stream if `sub` owned it)."""


class Subscription:
    """An async iterator of one subscriber's messages (see the module docstring)."""

    def __init__(
        self, hub: SubscriptionHost, stream: Stream, limit: int, *, markers: bool = False
    ) -> None:
        self.hub = hub
        self.stream = stream
        self.limit = limit
        self.markers = markers
        #: The last sequence handed to the consumer (or covered by what it was handed).
        self.position = 0
        self._prefix: deque[Message] = deque()
        self._queue: deque[Notification] = deque()
        self._handover = 0
        self._replay_from: int | None = None
        self._end_message: Resync | Closed | None = None
        self._overrun = False
        self._finished = False
        self._wake = asyncio.Event()
        self._squash = Squasher(stream.squash_millis / 1000) if stream.squash_millis else None

    @property
    def key(self) -> str:
        return self.stream.key

    @property
    def queued(self) -> int:
        """Notifications waiting for the consumer."""
        return len(self._queue)

    def _start_with(self, initial: list[Initial], seq: int) -> None:
        self._prefix.extend(initial)
        if self.markers:
            self._prefix.append(Current(seq))
        self._handover = seq
        self.position = seq

    def _start_at(self, initial: list[Initial], as_of: int) -> None:
        """The initial results as of `as_of`, then every change after it from the log."""
        self._prefix.extend(initial)
        self._start_replay(as_of)

    def _start_replay(self, since: int) -> None:
        self._replay_from = since
        self._handover = since
        self.position = since

    def _push(self, note: Notification) -> None:
        if self._overrun or self._finished:
            return
        if len(self._queue) >= self.limit:
            # Bounded memory: detach now; the consumer gets what is queued, then Resync.
            self._overrun = True
            self.hub.resyncs += 1
            self._detach()
        else:
            self._queue.append(note)
        self._wake.set()

    def _end(self, message: Closed) -> None:
        if self._end_message is None and not self._overrun:
            self._end_message = message
        self._detach()
        self._wake.set()

    def _detach(self) -> None:
        self.hub.detach(self)

    async def aclose(self) -> None:
        """Stop receiving; the iterator ends."""
        self._finished = True
        self._detach()
        self._wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._finished:
                raise StopAsyncIteration
            message = self._take_ready()
            if message is not None:
                return message
            if self._replay_from is not None:
                await self._replay_step()
                continue
            self._wake.clear()
            due = self._squash.next_due() if self._squash is not None else None
            if due is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):  # a held notification is due
                async with asyncio.timeout(max(0.0, due - time.monotonic())):
                    await self._wake.wait()

    def ready(self, limit: int = 1000) -> list[Message]:
        """Up to `limit` messages available now, without waiting (adapters batch sends)."""
        out: list[Message] = []
        while len(out) < limit and not self._finished:
            message = self._take_ready()
            if message is None:
                break
            out.append(message)
        return out

    def _take_ready(self) -> Message | None:
        """The next message if one is available without I/O, else None."""
        if self._prefix:
            message = self._prefix.popleft()
            if isinstance(message, Initial):
                if message.last:
                    self.position = max(self.position, message.seq)
            else:
                self.position = max(self.position, message.seq)
            return message
        if self._replay_from is not None:
            return None
        if self._squash is not None:
            note = self._take_squashed(self._squash)
            if note is not None:
                return note
        while self._queue:
            note = self._queue.popleft()
            if note.seq <= self._handover:
                continue
            self.position = note.seq
            return note
        if self._overrun:
            self._finished = True
            return Resync(self.position)
        if self._end_message is not None:
            self._finished = True
            end = self._end_message
            if isinstance(end, Closed):
                return Closed(max(self.position, end.seq), end.reason)
            return end
        return None

    def _take_squashed(self, squash: Squasher) -> Notification | None:
        """The next notification through the squasher; at the end, every held one."""
        now = time.monotonic()
        while self._queue:
            note = self._queue.popleft()
            if note.seq > self._handover:
                squash.push(note, now)
        if self._overrun or self._end_message is not None:
            squash.flush(now)
        else:
            squash.release(now)
        taken = squash.take()
        if taken is not None:
            self.position = max(self.position, taken.seq)
        elif not squash.holding:
            self.position = max(self.position, squash.cursor)
        return taken

    async def _replay_step(self) -> None:
        """Read the next batch of the log after `since`; switch to live when caught up."""
        assert self._replay_from is not None
        start = self._replay_from
        batch = await self.hub.index.read_changes(start, limit=self.hub.replay_batch)
        for change in batch:
            event = self.stream.evaluate(change)
            if event is None:
                continue
            observer = self.stream.observer
            annotation = observer.describe(event) if observer is not None else None
            if not self.stream.mode.passes(event.kind, annotation):
                continue
            self._prefix.append(Notification(event.seq, event, annotation))
        position = batch[-1].seq if batch else start
        self._handover = max(self._handover, position)
        caught_up = len(batch) < self.hub.replay_batch or (
            bool(self._queue) and position >= self._queue[0].seq - 1
        )
        if caught_up:
            self._replay_from = None
            if self.markers:
                self._prefix.append(Current(position))
            elif not self._prefix:
                self.position = max(self.position, position)
        else:
            self._replay_from = position
            if not self._prefix:
                self.position = max(self.position, position)
