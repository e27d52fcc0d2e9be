"""What an osquery agent makes of a server reply, and how long it waits between attempts.

osquery ignores HTTP status codes: an empty body is success, a body that is not JSON is a
failure, `node_invalid: true` drops the node key, a top-level `error` is a failure, anything
else is success (reference §0, §1.7).
"""

from __future__ import annotations

from typing import Any

import orjson


class RequestFailed(Exception):
    """A request the agent counts as failed; `node_invalid` when the server disowned the key."""

    def __init__(self, message: str, *, node_invalid: bool = False) -> None:
        super().__init__(message)
        self.node_invalid = node_invalid


def interpret(body: bytes) -> dict[str, Any]:
    """The reply document, or RequestFailed the way osquery's TLS helper fails."""
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestFailed(f"Cannot parse JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestFailed("Cannot parse JSON: the response is not an object")
    if doc.get("node_invalid") is True:
        error = doc.get("error")
        suffix = f": {error}" if isinstance(error, str) and error else ""
        raise RequestFailed(f"Request failed: Invalid node key{suffix}", node_invalid=True)
    if "error" in doc:
        raise RequestFailed(f"Request failed: {doc['error']}")
    return doc


def enrolled_key(body: bytes) -> str:
    """The node key from an enroll reply (`node_key`, else `id`): a non-empty string."""
    try:
        doc = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise RequestFailed(f"Cannot parse JSON: {exc}") from None
    if isinstance(doc, dict):
        key = doc.get("node_key", doc.get("id"))
        if isinstance(key, str) and key:
            return key
    raise RequestFailed("No node key returned from TLS enroll plugin")


def attempt_delay(attempt: int, unit: float = 1.0) -> float:
    """Sleep after failed attempt `attempt` (1-based) of a config/distributed call: i*i s."""
    return attempt * attempt * unit


def enroll_delay(step: int, max_interval: float, unit: float = 1.0) -> float:
    """Sleep after failed enroll attempt `step`: min(step^2, --tls_enroll_max_interval)."""
    return min(step * step * unit, max_interval * unit)


def logger_backoff(period: float, failures: int, backoff_max: float) -> float:
    """The logger's wait before its next flush after `failures` failed flushes in a row."""
    if failures <= 0:
        return period
    return min(period * failures * failures, max(backoff_max, period))
