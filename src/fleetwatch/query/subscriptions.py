"""The one subscription mechanism: standing matchers over the change log, and their readers.

Every stream in fleetwatch (a continuous query task, a live query campaign's results, the
WebSocket, SSE and webhook adapters) is built on `SubscriptionHub`:

    hub = SubscriptionHub(index, queue_limit=10_000)
    hub.start()                                   # listens to the DocumentIndex

    # A stream: one query registered in the shared predicate index under a key.
    stream, initial = await hub.open_stream(key, query, mode=StreamMode(...),
                                            observer=None, loader=None, since=None)
    # A subscriber of that stream (or of an ad-hoc query with `subscribe_query`):
    sub = await hub.subscribe(key, since=None, loader=my_loader)
    async for message in sub:                     # Initial | Notification | Resync | Closed
        ...
    await sub.aclose()
    await hub.close_stream(key, "cancelled")      # subscribers get Closed, the filter goes

    # A live query campaign's result stream is just an ad-hoc query:
    sub = await hub.subscribe_query(campaign_results_query, since=last_seen_seq)

Messages, each with the change-log sequence `seq` it reflects:

- `Initial(seq=S, payload, last)`: the initial results, read in one snapshot at sequence S
  (the payload chunks are what the `loader` returned; the default loader gives lists of
  matching document bodies, 500 per chunk). Only when `since` is None and a loader is given
  (or `subscribe_query(include_initial=True)`).
- `Notification(seq, event, annotation)`: one matching change after S (or after `since`):
  `event.kind` is added / updated / deleted / stopMatch and `event.change` is the committed
  Change (its `body` the document as written, `prev_body` the version before);
  `annotation` is what the stream's observer attached (e.g. a COUNT task's counters).
- `Resync(seq=N)`: the subscriber fell `queue_limit` notifications behind and is closed;
  N is the last sequence it was sent, so subscribing again with `since=N` loses nothing.
- `Closed(seq, reason)`: the stream was closed (task cancelled, deleted or expired).

Guarantees:

- No gap, no duplicate between the initial results and the notifications: the subscriber
  is registered before the snapshot is read, the snapshot is taken at sequence S, and only
  notifications with seq > S are passed on.
- `since=N` replays every matching change after N from the change log, then continues with
  live notifications; the hand-over skips what the replay already covered. A `since` older
  than the log's retention raises `ResumeTooOld`.
- The index listener never blocks and never does I/O: it matches each change against the
  predicate index and appends to bounded per-subscriber queues. An overrun subscriber is
  detached at once (memory stays bounded even if its socket never drains) and its iterator
  ends with `Resync`.

Matching semantics per stream (`StreamMode`): `notify_match` (CONTINUOUS) passes on added,
updated and deleted documents; `notify_leave` (CONTINUOUS_STOP_MATCH) passes on documents
that stop matching (kind stopMatch, with a reason) and deletes; `track_leave` evaluates the
previous version (from `Change.prev_body`, no extra read) for the observer only, so a COUNT
task's documentCount stays exact. A delete of a matching document is always kind `deleted`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import Action, Change, JsonObject
from fleetwatch.index.store import DocumentIndex
from fleetwatch.query.matcher import CompiledQuery, compile_query
from fleetwatch.query.predicate_index import PredicateIndex
from fleetwatch.query.snapshot import snapshot
from fleetwatch.query.spec import Query
from fleetwatch.query.sql import where_clause
from fleetwatch.storage.schema import documents

log = logging.getLogger(__name__)

#: Documents per Initial message of the default loader.
INITIAL_CHUNK = 500
#: Changes read from the log per step of a replay.
REPLAY_BATCH = 1000

#: Reads the initial results inside the snapshot: a list of payload chunks (maybe empty).
InitialLoader = Callable[[AsyncConnection], Awaitable[list[Any]]]


class EventKind(StrEnum):
    """What a change did to a stream's result set."""

    ADDED = "added"
    UPDATED = "updated"
    DELETED = "deleted"
    STOP_MATCH = "stopMatch"


#: Why a document left a result set, by event kind.
LEAVE_REASONS = {
    EventKind.DELETED: "the document was deleted",
    EventKind.STOP_MATCH: "the document no longer matches the query",
}


@dataclass(frozen=True, slots=True)
class Event:
    """A change as one stream sees it."""

    change: Change
    kind: EventKind
    #: Whether the previous version was in the result set (known for leave-tracking streams
    #: and for matches; False when a stream does not evaluate previous versions).
    before: bool = False

    @property
    def seq(self) -> int:
        return self.change.seq

    @property
    def reason(self) -> str | None:
        """Why the document left the result set, for deletes and stop-matches."""
        return LEAVE_REASONS.get(self.kind)


@dataclass(frozen=True, slots=True)
class StreamMode:
    """Which events a stream passes on to its subscribers (see the module docstring)."""

    notify_match: bool = True
    notify_leave: bool = False
    track_leave: bool = False

    @property
    def evaluates_previous(self) -> bool:
        return self.notify_leave or self.track_leave

    def delivers(self, kind: EventKind) -> bool:
        if kind is EventKind.STOP_MATCH:
            return self.notify_leave
        if kind is EventKind.DELETED:
            return self.notify_match or self.notify_leave
        return self.notify_match


class StreamObserver(Protocol):
    """Per-stream state kept in step with the log (e.g. a COUNT task's counters)."""

    def on_event(self, event: Event) -> JsonObject | None:
        """A new event, in sequence order: update state, return the annotation to send."""

    def describe(self, event: Event) -> JsonObject | None:
        """The annotation for a replayed (old) event; must not change state."""


@dataclass(frozen=True, slots=True)
class Initial:
    seq: int
    payload: Any
    last: bool


@dataclass(frozen=True, slots=True)
class Notification:
    seq: int
    event: Event
    annotation: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class Resync:
    seq: int


@dataclass(frozen=True, slots=True)
class Closed:
    seq: int
    reason: str


Message = Initial | Notification | Resync | Closed


class SubscriptionError(Exception):
    """A subscription that cannot be made; the message says why."""


class UnknownStream(SubscriptionError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no open stream {key!r}")


class ResumeTooOld(SubscriptionError):
    def __init__(self, since: int, first: int) -> None:
        super().__init__(
            f"sequence {since} is older than the change log keeps (oldest kept: {first}); "
            "subscribe again without since to get the current results"
        )
        self.since = since
        self.first = first


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


def classify(action: Action, matched_now: bool, matched_before: bool) -> EventKind | None:
    """Added, updated, deleted, stopped matching, or nothing."""
    if action is Action.DELETE:
        return EventKind.DELETED if matched_now or matched_before else None
    if matched_now:
        return EventKind.UPDATED if matched_before else EventKind.ADDED
    return EventKind.STOP_MATCH if matched_before else None


class SubscriptionHub:
    """Matches every committed change against the open streams and feeds their subscribers."""

    def __init__(
        self,
        index: DocumentIndex,
        *,
        queue_limit: int = 10_000,
        replay_batch: int = REPLAY_BATCH,
    ) -> None:
        self.index = index
        self.queue_limit = queue_limit
        self.replay_batch = replay_batch
        self._streams: dict[str, Stream] = {}
        self._matchers: PredicateIndex[str] = PredicateIndex()
        #: The streams that also evaluate the previous version (stop-match, counters).
        self._leave_matchers: PredicateIndex[str] = PredicateIndex()
        self._leave_keys: set[str] = set()
        self._adhoc = itertools.count(1)
        self._started = False
        #: Highest sequence the listener has processed.
        self.position = 0
        #: Subscribers sent a resync so far (ops gauge).
        self.resyncs = 0
        #: Called with the seconds spent matching each change (ops hook: metrics).
        self.on_match: Callable[[float], None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start listening to the index (call after `index.start()`)."""
        if not self._started:
            self.position = self.index.last_seq
            self.index.add_listener(self._on_changes)
            self._started = True

    async def stop(self) -> None:
        """Stop listening; every subscriber gets Closed."""
        if self._started:
            self.index.remove_listener(self._on_changes)
            self._started = False
        for key in list(self._streams):
            await self.close_stream(key, "the server is shutting down")

    # --- gauges ------------------------------------------------------------------------

    @property
    def active_filters(self) -> int:
        """Queries registered for matching (one per open stream)."""
        return len(self._streams)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s.subscribers) for s in self._streams.values())

    def queue_depths(self) -> list[int]:
        """Notifications queued per subscriber (ops gauges)."""
        return [sub.queued for s in self._streams.values() for sub in s.subscribers]

    def stream(self, key: str) -> Stream | None:
        return self._streams.get(key)

    # --- streams -----------------------------------------------------------------------

    async def open_stream(
        self,
        key: str,
        query: Query,
        *,
        mode: StreamMode | None = None,
        observer: StreamObserver | None = None,
        loader: InitialLoader | None = None,
        since: int | None = None,
    ) -> tuple[Stream, list[Initial]]:
        """Register `query` under `key`, in step with the log.

        With a `loader`, the initial results are read in a snapshot at S and the stream
        (its observer) starts at S+1; with `since` (e.g. a task resumed after a restart),
        the observer first sees every change after `since` from the log, falling back to
        the loader if that part of the log was trimmed; otherwise it starts now.
        """
        if key in self._streams:
            raise SubscriptionError(f"a stream {key!r} is already open")
        compiled = compile_query(query)
        stream = Stream(key, query, compiled, mode or StreamMode(), observer, pending=[])
        self._register(stream)
        # Everything up to here was dispatched before the stream existed; later events are
        # buffered in `pending` until the stream has caught up.
        position = self.position
        try:
            initial: list[Initial] = []
            if since is not None and await self._retained(since):
                position = await self._replay_into(stream, since)
            elif loader is not None:
                initial, position = await self._load(loader)
            assert stream.pending is not None
            pending, stream.pending = stream.pending, None
            for event in pending:
                if event.seq > position:
                    self._dispatch(stream, event)
        except BaseException:
            self._unregister(stream)
            raise
        return stream, initial

    async def close_stream(self, key: str, reason: str) -> bool:
        """Unregister a stream; its subscribers get Closed(reason). False if unknown."""
        stream = self._streams.get(key)
        if stream is None:
            return False
        self._unregister(stream)
        for sub in list(stream.subscribers):
            sub._end(Closed(max(sub.position, self.position), reason))
        stream.subscribers.clear()
        return True

    def _register(self, stream: Stream) -> None:
        self._streams[stream.key] = stream
        self._matchers.add(stream.key, stream.compiled)
        if stream.mode.evaluates_previous:
            self._leave_matchers.add(stream.key, stream.compiled)
            self._leave_keys.add(stream.key)

    def _unregister(self, stream: Stream) -> None:
        stream.closed = True
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]
            self._matchers.remove(stream.key)
            if stream.key in self._leave_keys:
                self._leave_matchers.remove(stream.key)
                self._leave_keys.discard(stream.key)

    async def _retained(self, since: int) -> bool:
        first = await self.index.first_retained_seq()
        return first == 0 or since >= first - 1

    async def _replay_into(self, stream: Stream, since: int) -> int:
        """Feed the observer every change after `since` up to the live position."""
        position = since
        while True:
            batch = await self.index.read_changes(position, limit=self.replay_batch)
            for change in batch:
                event = stream.evaluate(change)
                if event is not None and stream.observer is not None:
                    stream.observer.on_event(event)
            if batch:
                position = batch[-1].seq
            assert stream.pending is not None
            if len(batch) < self.replay_batch or (
                stream.pending and position >= stream.pending[0].seq - 1
            ):
                return position

    async def _load(self, loader: InitialLoader) -> tuple[list[Initial], int]:
        async with snapshot(self.index.db) as (conn, seq):
            chunks = await loader(conn)
        if not chunks:
            return [Initial(seq, [], True)], seq
        return [Initial(seq, c, i == len(chunks) - 1) for i, c in enumerate(chunks)], seq

    # --- subscribers -------------------------------------------------------------------

    async def subscribe(
        self,
        key: str,
        *,
        since: int | None = None,
        loader: InitialLoader | None = None,
    ) -> Subscription:
        """Subscribe to an open stream.

        `since=None` with a loader: the initial results (snapshot at S), then every
        notification after S. `since=None` without one: notifications from now on.
        `since=N`: every matching change after N from the log, then live ones.
        """
        stream = self._streams.get(key)
        if stream is None:
            raise UnknownStream(key)
        if since is not None and not await self._retained(since):
            raise ResumeTooOld(since, await self.index.first_retained_seq())
        if stream.closed:
            raise UnknownStream(key)
        sub = Subscription(self, stream, self.queue_limit)
        stream.subscribers.add(sub)  # from here on live notifications queue up
        try:
            if since is not None:
                sub._start_replay(since)
            elif loader is not None:
                initial, seq = await self._load(loader)
                sub._start_with(initial, seq)
            else:
                sub._start_with([], self.position)
        except BaseException:
            sub._detach()
            raise
        return sub

    async def subscribe_query(
        self,
        query: Query,
        *,
        since: int | None = None,
        include_initial: bool = True,
        mode: StreamMode | None = None,
        loader: InitialLoader | None = None,
    ) -> Subscription:
        """Subscribe to an ad-hoc query: a private stream that closes with the subscription.

        The default initial results are the matching documents (bodies, by self link).
        """
        key = f"adhoc:{next(self._adhoc)}"
        stream, _ = await self.open_stream(key, query, mode=mode)
        if include_initial and loader is None:
            loader = documents_loader(query, self.index.db.dialect)
        try:
            sub = await self.subscribe(key, since=since, loader=loader if include_initial else None)
        except BaseException:
            await self.close_stream(key, "subscription failed")
            raise
        stream.owned_by = sub
        return sub

    def _detach(self, sub: Subscription) -> None:
        stream = sub.stream
        stream.subscribers.discard(sub)
        if stream.owned_by is sub:
            self._unregister(stream)

    # --- the index listener ------------------------------------------------------------

    def _on_changes(self, batch: Sequence[Change]) -> None:
        """Match committed changes, in order; never blocks, never raises into the writer."""
        for change in batch:
            if change.seq <= self.position:
                continue
            self.position = change.seq
            if not self._streams:
                continue
            try:
                if self.on_match is None:
                    self._match(change)
                else:
                    started = time.perf_counter()
                    self._match(change)
                    self.on_match(time.perf_counter() - started)
            except Exception:  # a bad observer or document must not stop the index
                log.exception("matching change %s failed", change.seq)

    def _match(self, change: Change) -> None:
        now = self._matchers.match(change.body)
        before: set[str] = set()
        if self._leave_keys and change.prev_body is not None:
            before = self._leave_matchers.match(change.prev_body)
        for key in now | before:
            stream = self._streams.get(key)
            if stream is None:  # closed by an earlier dispatch of this change (overrun)
                continue
            if stream.mode.evaluates_previous:
                was = key in before
            else:
                was = change.prev_body is not None and stream.compiled.matches(change.prev_body)
            event = stream.classify(change, key in now, was)
            if event is not None:
                self._dispatch(stream, event)

    def _dispatch(self, stream: Stream, event: Event) -> None:
        if stream.pending is not None:
            stream.pending.append(event)
            return
        annotation = stream.observer.on_event(event) if stream.observer is not None else None
        if not stream.mode.delivers(event.kind) or not stream.subscribers:
            return
        note = Notification(event.seq, event, annotation)
        for sub in list(stream.subscribers):
            sub._push(note)


class Subscription:
    """An async iterator of one subscriber's messages (see the module docstring)."""

    def __init__(self, hub: SubscriptionHub, stream: Stream, limit: int) -> None:
        self.hub = hub
        self.stream = stream
        self.limit = limit
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

    @property
    def key(self) -> str:
        return self.stream.key

    @property
    def queued(self) -> int:
        """Notifications waiting for the consumer."""
        return len(self._queue)

    def _start_with(self, initial: list[Initial], seq: int) -> None:
        self._prefix.extend(initial)
        self._handover = seq
        self.position = seq

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
        self.hub._detach(self)

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
            if not isinstance(message, Initial) or message.last:
                self.position = max(self.position, message.seq)
            return message
        if self._replay_from is not None:
            return None
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

    async def _replay_step(self) -> None:
        """Read the next batch of the log after `since`; switch to live when caught up."""
        assert self._replay_from is not None
        start = self._replay_from
        batch = await self.hub.index.read_changes(start, limit=self.hub.replay_batch)
        for change in batch:
            event = self.stream.evaluate(change)
            if event is None or not self.stream.mode.delivers(event.kind):
                continue
            observer = self.stream.observer
            annotation = observer.describe(event) if observer is not None else None
            self._prefix.append(Notification(event.seq, event, annotation))
        position = batch[-1].seq if batch else start
        self._handover = max(self._handover, position)
        caught_up = len(batch) < self.hub.replay_batch or (
            bool(self._queue) and position >= self._queue[0].seq - 1
        )
        if caught_up:
            self._replay_from = None
            if not self._prefix:
                self.position = max(self.position, position)
        else:
            self._replay_from = position
            if not self._prefix:
                self.position = max(self.position, position)


def documents_loader(query: Query, dialect: str, chunk: int = INITIAL_CHUNK) -> InitialLoader:
    """The default initial results: matching live document bodies by self link, in chunks."""

    async def load(conn: AsyncConnection) -> list[Any]:
        result = await conn.execute(
            select(documents.c.body)
            .where(where_clause(query, dialect))
            .order_by(documents.c.self_link)
        )
        bodies = [row[0] for row in result]
        return [bodies[i : i + chunk] for i in range(0, len(bodies), chunk)]

    return load


__all__ = [
    "Closed",
    "Event",
    "EventKind",
    "Initial",
    "InitialLoader",
    "Message",
    "Notification",
    "ResumeTooOld",
    "Resync",
    "Stream",
    "StreamMode",
    "StreamObserver",
    "Subscription",
    "SubscriptionError",
    "SubscriptionHub",
    "UnknownStream",
    "classify",
    "documents_loader",
]
