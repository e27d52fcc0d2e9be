"""What a committed change is to one stream: its event kind, and which kinds a stream
passes on (`StreamMode`). See `fleetwatch.query.subscriptions` for the mechanism."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from fleetwatch.index.document import Action, Change, JsonObject


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
#: The kinds that take a document out of a result set.
LEAVES = frozenset(LEAVE_REASONS)


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
    """Which events a stream passes on to its subscribers (see the hub's docstring)."""

    notify_match: bool = True
    notify_leave: bool = False
    track_leave: bool = False
    #: Pass on exactly the events the observer annotated, whatever their kind (a
    #: group-count task: the changes that moved a count, leaving ones included).
    annotated_only: bool = False

    @property
    def evaluates_previous(self) -> bool:
        return self.notify_leave or self.track_leave

    def delivers(self, kind: EventKind) -> bool:
        if kind is EventKind.STOP_MATCH:
            return self.notify_leave
        if kind is EventKind.DELETED:
            return self.notify_match or self.notify_leave
        return self.notify_match

    def passes(self, kind: EventKind, annotation: JsonObject | None) -> bool:
        """Whether an event of `kind` with this observer annotation reaches subscribers."""
        if self.annotated_only:
            return annotation is not None
        return self.delivers(kind)


class StreamObserver(Protocol):
    """Per-stream state kept in step with the log (e.g. a COUNT task's counters)."""

    def on_event(self, event: Event) -> JsonObject | None:
        """A new event, in sequence order: update state, return the annotation to send."""

    def describe(self, event: Event) -> JsonObject | None:
        """The annotation for a replayed (old) event; must not change state."""


def classify(action: Action, matched_now: bool, matched_before: bool) -> EventKind | None:
    """Added, updated, deleted, stopped matching, or nothing."""
    if action is Action.DELETE:
        return EventKind.DELETED if matched_now or matched_before else None
    if matched_now:
        return EventKind.UPDATED if matched_before else EventKind.ADDED
    return EventKind.STOP_MATCH if matched_before else None
