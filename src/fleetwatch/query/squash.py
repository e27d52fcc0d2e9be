"""Squashing (a task's `squashMillis`): changes to one document within N ms reach a
subscriber as one notification carrying the latest state.

The first change of a quiet document (none sent in the last N ms) goes out at once; later
ones are held until N ms after the last one sent, each replacing the held one (an `added`
stays `added`; group counts of both are kept, the later winning). A delete or a stop-match is
never squashed away: a change arriving while one is held sends it first. So the state a
subscriber ends with is the unsquashed stream's (`tests/query/test_squash.py` checks this
for any sequence of events).

Held changes make notifications leave out of sequence order, so a squashed notification's
`seq` is a resume cursor rather than its change's sequence: the lower of that and one less
than the first held change of another document. Resuming after any notification's `seq`
therefore loses nothing (it may repeat a held document's latest state). The clock is the
caller's, so the buffer is pure and deterministic.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fleetwatch.index.document import JsonObject
from fleetwatch.query.stream_events import LEAVES, Event, EventKind
from fleetwatch.query.stream_messages import Notification

#: The annotation field holding per-group counts, merged rather than replaced.
GROUP_COUNTS = "groupCounts"


@dataclass(slots=True)
class _Held:
    note: Notification
    #: The sequence of the first change held: nothing before it is owed to the subscriber.
    first_seq: int
    #: When it goes out (the caller's clock, seconds).
    due: float


def merge(held: Notification, new: Notification) -> Notification:
    """One notification standing for `held` then `new` (of the same document)."""
    kind = new.event.kind
    if held.event.kind is EventKind.ADDED and kind is EventKind.UPDATED:
        kind = EventKind.ADDED  # the subscriber has not seen the document yet
    annotation: JsonObject | None = new.annotation
    if held.annotation is not None:
        annotation = {**held.annotation, **(new.annotation or {})}
        counts = {
            **(held.annotation.get(GROUP_COUNTS) or {}),
            **((new.annotation or {}).get(GROUP_COUNTS) or {}),
        }
        if counts:
            annotation[GROUP_COUNTS] = counts
    return Notification(new.seq, Event(new.event.change, kind, held.event.before), annotation)


class Squasher:
    """Per subscriber: holds notifications of documents that changed within the window."""

    def __init__(self, window: float) -> None:
        #: Seconds.
        self.window = window
        #: link -> when its last notification went out, oldest first.
        self._sent: dict[str, float] = {}
        #: link -> its held notification, in order of first_seq.
        self._held: dict[str, _Held] = {}
        self._out: deque[Notification] = deque()
        self._last_seq = 0

    @property
    def holding(self) -> int:
        """Documents with a held notification."""
        return len(self._held)

    @property
    def cursor(self) -> int:
        """What a subscriber that took every notification so far holds everything up to."""
        for held in self._held.values():
            return held.first_seq - 1
        return self._last_seq

    def push(self, note: Notification, now: float) -> None:
        """A new notification (in sequence order)."""
        self._last_seq = max(self._last_seq, note.seq)
        link = note.event.change.self_link
        held = self._held.get(link)
        if held is not None:
            if held.note.event.kind in LEAVES:
                # never squashed away: it goes out now, the new state waits its window
                self._emit(link, now)
                self._held[link] = _Held(note, note.seq, now + self.window)
            else:
                held.note = merge(held.note, note)
            return
        self._forget_quiet(now)
        last = self._sent.get(link)
        if last is None:
            self._out.append(self._stamped(note))
            self._mark(link, now)
        else:
            self._held[link] = _Held(note, note.seq, last + self.window)

    def release(self, now: float) -> None:
        """Send the held notifications whose window has ended."""
        for link in [link for link, held in self._held.items() if held.due <= now]:
            self._emit(link, now)

    def flush(self, now: float) -> None:
        """Send every held notification (the stream ends)."""
        for link in list(self._held):
            self._emit(link, now)

    def next_due(self) -> float | None:
        """When the next held notification goes out, or None."""
        return min((held.due for held in self._held.values()), default=None)

    def take(self) -> Notification | None:
        """The next notification to send, or None."""
        return self._out.popleft() if self._out else None

    def _emit(self, link: str, now: float) -> None:
        held = self._held.pop(link)
        self._out.append(self._stamped(held.note))
        self._mark(link, now)

    def _stamped(self, note: Notification) -> Notification:
        cursor = min(note.seq, self.cursor)
        if cursor == note.seq:
            return note
        return Notification(cursor, note.event, note.annotation)

    def _mark(self, link: str, now: float) -> None:
        self._sent.pop(link, None)
        self._sent[link] = now

    def _forget_quiet(self, now: float) -> None:
        """Drop documents quiet for a whole window (memory stays bounded by the rate)."""
        while self._sent:
            link, sent = next(iter(self._sent.items()))
            if now - sent < self.window:
                return
            del self._sent[link]
