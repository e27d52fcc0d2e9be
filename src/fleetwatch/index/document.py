"""Documents and the changes that write them, with Xenon's `document*` fields."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JsonObject = dict[str, Any]

#: Xenon's built-in fields, stored inside every document body.
SELF_LINK = "documentSelfLink"
KIND = "documentKind"
VERSION = "documentVersion"
UPDATE_TIME = "documentUpdateTimeMicros"
UPDATE_ACTION = "documentUpdateAction"
EXPIRATION = "documentExpirationTimeMicros"
BUILTIN_FIELDS = (SELF_LINK, KIND, VERSION, UPDATE_TIME, UPDATE_ACTION, EXPIRATION)


class Action(StrEnum):
    """How a write changed a document (Xenon's `documentUpdateAction`)."""

    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


def now_micros() -> int:
    """Wall-clock time in microseconds since the epoch (Xenon's time unit)."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Document:
    """The latest version of one document; `body` holds its fields and the built-in ones."""

    self_link: str
    kind: str
    version: int
    update_time_micros: int
    update_action: Action
    expiration_micros: int | None
    deleted: bool
    body: JsonObject


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the ordered change log: a document as a write left it.

    `prev_body` is the version before the write (None for a creation), so a matcher can tell
    a document that stops matching without another read.
    """

    seq: int
    self_link: str
    kind: str
    version: int
    action: Action
    time_micros: int
    body: JsonObject
    prev_body: JsonObject | None


@dataclass(frozen=True, slots=True)
class Write:
    """A requested write.

    - POST creates the document; if it exists (and is not deleted) the write fails with
      `DocumentExists`, or with `if_absent` it is skipped silently (idempotent inserts,
      e.g. a result log row osquery resends).
    - PUT replaces the body, creating the document if it is missing.
    - PATCH merges the given top-level fields into the body (null fields are ignored, as in
      Xenon); the document must exist.
    - DELETE marks the document deleted; the document must exist.
    """

    action: Action
    self_link: str
    kind: str | None = None
    body: JsonObject = field(default_factory=dict)
    expiration_micros: int | None = None
    if_absent: bool = False
    #: PUT/PATCH/DELETE only when the current version equals this (optimistic concurrency).
    expected_version: int | None = None
