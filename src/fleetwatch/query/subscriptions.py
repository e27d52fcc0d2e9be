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

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import Change
from fleetwatch.index.store import DocumentIndex
from fleetwatch.query.matcher import compile_query
from fleetwatch.query.predicate_index import PredicateIndex
from fleetwatch.query.snapshot import snapshot, write_seq
from fleetwatch.query.spec import Query
from fleetwatch.query.sql import where_clause
from fleetwatch.query.stream_events import (
    Event,
    StreamMode,
    StreamObserver,
)
from fleetwatch.query.stream_messages import (
    Chunk,
    Closed,
    Initial,
    Notification,
    ResumeTooOld,
    SubscriptionError,
    UnknownStream,
)
from fleetwatch.query.subscription import Stream, Subscription
from fleetwatch.storage.interruptible import interruptible
from fleetwatch.storage.schema import documents

log = logging.getLogger(__name__)

#: Documents per Initial message of the default loader.
INITIAL_CHUNK = 500
#: Changes read from the log per step of a replay.
REPLAY_BATCH = 1000

#: Reads the initial results inside the snapshot: a list of payload chunks (maybe empty).
InitialLoader = Callable[[AsyncConnection], Awaitable[list[Any]]]
#: Takes a stream's initial results before any later event reaches its observer.
Initialize = Callable[[list[Initial]], None]


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
        as_of: int | None = None,
        initialize: Initialize | None = None,
        squash_millis: int = 0,
    ) -> tuple[Stream, list[Initial]]:
        """Register `query` under `key`, in step with the log.

        With a `loader`, the initial results are read in a snapshot at S and the stream
        (its observer) starts at S+1; with `as_of` too, the loader reads the index as of
        that sequence and the observer then sees every change after it from the log (and
        so does every subscriber given a loader). With `since` (e.g. a task resumed after a
        restart), the observer first sees every change after `since` from the log, falling
        back to the loader if that part of the log was trimmed; otherwise it starts now.
        `initialize` gets the initial results before the observer sees any later event.
        `squash_millis`: see `fleetwatch.query.squash`.
        """
        if key in self._streams:
            raise SubscriptionError(f"a stream {key!r} is already open")
        compiled = compile_query(query)
        stream = Stream(key, query, compiled, mode or StreamMode(), observer, pending=[])
        stream.as_of = as_of
        stream.squash_millis = squash_millis
        self._register(stream)
        # Everything up to here was dispatched before the stream existed; later events are
        # buffered in `pending` until the stream has caught up.
        position = self.position
        try:
            initial: list[Initial] = []
            if since is not None and await self._retained(since):
                position = await self._replay_into(stream, since)
            elif loader is not None:
                if as_of is not None and not await self._retained(as_of):
                    raise ResumeTooOld(as_of, await self.index.first_retained_seq())
                initial, position = await self._load(loader, as_of)
                if initialize is not None:
                    initialize(initial)
                if as_of is not None:
                    position = await self._replay_into(stream, as_of)
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

    async def _load(
        self, loader: InitialLoader, as_of: int | None = None
    ) -> tuple[list[Initial], int]:
        """The loader's chunks, read in one snapshot: as of that snapshot's sequence, or
        of `as_of` when the loader reads the index as it was then."""
        async with snapshot(self.index.db) as (conn, seq):
            chunks = await interruptible(conn, loader(conn))
        if as_of is not None:
            seq = as_of
        if not chunks:
            return [Initial(seq, [], True)], seq
        last = len(chunks) - 1
        return [
            Initial(seq, c.payload, i == last, c.seqs)
            if isinstance(c, Chunk)
            else Initial(seq, c, i == last)
            for i, c in enumerate(chunks)
        ], seq

    # --- subscribers -------------------------------------------------------------------

    async def subscribe(
        self,
        key: str,
        *,
        since: int | None = None,
        loader: InitialLoader | None = None,
        markers: bool = False,
    ) -> Subscription:
        """Subscribe to an open stream.

        `since=None` with a loader: the initial results (snapshot at S), then every
        notification after S. `since=None` without one: notifications from now on.
        `since=N`: every matching change after N from the log, then live ones.
        `markers`: also send `Current(seq)` once the subscriber holds everything up to seq
        (after the initial results, after the replay, or at once when there is neither).
        """
        stream = self._streams.get(key)
        if stream is None:
            raise UnknownStream(key)
        if since is not None and not await self._retained(since):
            raise ResumeTooOld(since, await self.index.first_retained_seq())
        if stream.closed:
            raise UnknownStream(key)
        sub = Subscription(self, stream, self.queue_limit, markers=markers)
        stream.subscribers.add(sub)  # from here on live notifications queue up
        try:
            if since is not None:
                sub._start_replay(since)
            elif loader is not None and stream.as_of is not None:
                if not await self._retained(stream.as_of):
                    raise ResumeTooOld(stream.as_of, await self.index.first_retained_seq())
                initial, _ = await self._load(loader, stream.as_of)
                sub._start_at(initial, stream.as_of)
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
        markers: bool = False,
    ) -> Subscription:
        """Subscribe to an ad-hoc query: a private stream that closes with the subscription.

        The default initial results are the matching documents' bodies in the order of
        their last write (`documents_loader`), each chunk with their sequences.
        """
        key = f"adhoc:{next(self._adhoc)}"
        stream, _ = await self.open_stream(key, query, mode=mode)
        if include_initial and loader is None:
            loader = documents_loader(query, self.index.db.dialect)
        try:
            sub = await self.subscribe(
                key, since=since, loader=loader if include_initial else None, markers=markers
            )
        except BaseException:
            await self.close_stream(key, "subscription failed")
            raise
        stream.owned_by = sub
        return sub

    def detach(self, sub: Subscription) -> None:
        """Stop feeding `sub`; an ad-hoc stream it owned is closed."""
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
        if not stream.mode.passes(event.kind, annotation) or not stream.subscribers:
            return
        note = Notification(event.seq, event, annotation)
        for sub in list(stream.subscribers):
            sub._push(note)


def documents_loader(query: Query, dialect: str, chunk: int = INITIAL_CHUNK) -> InitialLoader:
    """The default initial results: matching live document bodies in the order of their
    last write, in Chunks carrying those writes' sequences (one query, see `write_seq`)."""

    async def load(conn: AsyncConnection) -> list[Any]:
        seq = write_seq().label("write_seq")
        result = await conn.execute(
            select(seq, documents.c.body)
            .where(where_clause(query, dialect))
            .order_by(seq, documents.c.self_link)
        )
        rows = [(int(row[0] or 0), row[1]) for row in result]
        return [
            Chunk([body for _, body in part], tuple(s for s, _ in part))
            for part in (rows[i : i + chunk] for i in range(0, len(rows), chunk))
        ]

    return load
