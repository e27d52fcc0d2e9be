"""What a destination delivers: events, each already serialised once as a JSON line.

An event carries a deterministic `id` (Elasticsearch's `_id`: a repeat overwrites instead of
duplicating), the time and host it is about (Splunk HEC's `time` and `host`) and its
`source`: an osquery log type (`result`, `status`, `policy`) or `campaign` (a live query
result row).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Event:
    """One event, ready to send."""

    source: str
    id: str
    line: bytes
    time: float
    host: str | None = None


def dumps(body: Any) -> bytes:
    """The JSON of an event body (non-string keys as strings, unknown types as text)."""
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS, default=str)


def log_event(host_id: int, log_type: str, item: Any) -> Event:
    """An osquery log item as forwarded: the item as sent, with the host id it came from.

    Its id is a digest of that line, so osquery's resend of the same line has the same id.
    """
    if isinstance(item, dict):
        line = dumps({**item, "host_id": host_id})
        moment = item.get("unixTime")
        host = item.get("hostIdentifier")
    else:
        line = dumps({"host_id": host_id, "raw": item})
        moment, host = None, None
    digest = hashlib.blake2b(line, digest_size=16).hexdigest()
    return Event(log_type, digest, line, _epoch(moment), str(host) if host is not None else None)


def _epoch(value: Any) -> float:
    """osquery's `unixTime` (a number, or digits in a string); now when it has none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return time.time()
