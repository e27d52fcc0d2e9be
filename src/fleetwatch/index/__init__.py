"""The document index and its ordered change log, expiry and retention. May import storage/
and `periodic` only: it knows nothing of osquery or the fleet."""

from fleetwatch.index.document import Action, Change, Document, JsonObject, Write, now_micros
from fleetwatch.index.errors import (
    DocumentExists,
    DocumentIndexError,
    DocumentNotFound,
    InvalidWrite,
    VersionConflict,
)
from fleetwatch.index.store import ChangeListener, DocumentIndex

__all__ = [
    "Action",
    "Change",
    "ChangeListener",
    "Document",
    "DocumentExists",
    "DocumentIndex",
    "DocumentIndexError",
    "DocumentNotFound",
    "InvalidWrite",
    "JsonObject",
    "VersionConflict",
    "Write",
    "now_micros",
]
