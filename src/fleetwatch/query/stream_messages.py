"""The messages a subscriber reads (`Initial`, `Notification`, `Current`, `Resync`,
`Closed`), the chunks a loader returns, and why a subscription cannot be made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetwatch.index.document import JsonObject
from fleetwatch.query.stream_events import Event


@dataclass(frozen=True, slots=True)
class Chunk:
    """A loader's chunk with the change-log sequence of each item's last write, in order.

    A loader may return plain payloads (the chunk then has no cursor of its own) or Chunks,
    whose items are sent in sequence order so that each chunk's last sequence is a cursor.
    """

    payload: Any
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Initial:
    #: The snapshot sequence S the initial results reflect.
    seq: int
    payload: Any
    last: bool
    #: The sequence of the last write of each item of the payload, ascending (None when the
    #: loader did not give them, e.g. a count).
    seqs: tuple[int, ...] | None = None

    @property
    def cursor(self) -> int | None:
        """What a client that processed this message may resume after: S for the last chunk
        (it then holds the snapshot), the sequence of its newest item for another chunk whose
        items are in sequence order, else None (resuming must start over)."""
        if self.last:
            return self.seq
        return self.seqs[-1] if self.seqs else None


@dataclass(frozen=True, slots=True)
class Current:
    """Caught up: the subscriber now holds everything up to `seq` (after the initial
    results, and after a resume's replay). Sent only to subscribers that ask for markers."""

    seq: int


@dataclass(frozen=True, slots=True)
class Notification:
    #: The change's sequence; on a squashed stream the resume cursor, which is lower while
    #: an earlier change of another document is still held (see `fleetwatch.query.squash`).
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


Message = Initial | Notification | Current | Resync | Closed


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
