"""How a batch of events reaches a destination: one sink per destination type.

A sink sends one batch and says how it went: it returns what the destination refused for
good within the batch (`Refused`: an Elasticsearch item with a mapping error), or raises
`DestinationError` — retryable (`retryable = True`: a connection failure, a timeout, a 429
or 5xx answer, a refused token the operator may fix) or not (`DestinationRejected`: the
destination will never take this batch). The lane (fleetwatch.destinations.lane) retries,
in order; every sink's request is idempotent or at-least-once by design (Elasticsearch's
deterministic `_id` makes a resent batch overwrite itself).

HTTP sinks use the outbound guard's client (fleetwatch.outbound): the address is checked
when each connection is made, like a webhook's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from fleetwatch.destinations.events import Event
from fleetwatch.outbound import OutboundRefused, OutboundUnresolved

#: A destination answer longer than this is cut in a `last_error` (it is shown to admins).
REASON_CHARS = 200


class DestinationError(Exception):
    """A batch was not delivered; the message says why. Retried unless DestinationRejected."""

    retryable = True


class DestinationRejected(DestinationError):
    """The destination refused the batch for good (retrying the same events cannot help)."""

    retryable = False


@dataclass(frozen=True)
class Refused:
    """Events of a delivered batch that the destination refused for good, and why."""

    count: int
    reason: str


class Sink(Protocol):
    """Delivers batches of events to one destination."""

    async def send(self, events: Sequence[Event]) -> Refused | None:
        """Deliver `events`; return what the destination refused of them for good."""
        ...

    async def close(self) -> None: ...


# --- files -------------------------------------------------------------------------------


class FileSink:
    """Appends JSON lines to a file per event source (`path_for`), rotated past `max_bytes`.

    Rotation keeps `backups` older files (`.1` newest); writes run in a worker thread so a
    slow disk never stalls the event loop. A failed write is retried (a full disk may clear).
    """

    def __init__(self, path_for: Callable[[str], Path], max_bytes: int, backups: int) -> None:
        self.path_for = path_for
        self.max_bytes = max_bytes
        self.backups = backups

    async def send(self, events: Sequence[Event]) -> Refused | None:
        runs: dict[Path, list[bytes]] = {}
        for event in events:
            try:
                path = self.path_for(event.source)
            except KeyError:
                raise DestinationRejected(
                    f"this destination has no file for {event.source!r} events"
                ) from None
            runs.setdefault(path, []).append(event.line)
        for path, lines in runs.items():
            try:
                await asyncio.to_thread(self._write, path, lines)
            except OSError as exc:
                raise DestinationError(f"cannot write {path}: {exc}") from exc
        return None

    def _write(self, path: Path, lines: list[bytes]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.max_bytes:
            self._rotate(path)
        with open(path, "ab") as handle:
            handle.write(data)

    def _rotate(self, path: Path) -> None:
        if self.backups <= 0:
            path.unlink(missing_ok=True)
            return
        for n in range(self.backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
        os.replace(path, path.with_name(f"{path.name}.1"))

    async def close(self) -> None:
        return None


# --- HTTP --------------------------------------------------------------------------------


def _retryable_status(status: int) -> bool:
    # 401/403: a token the operator can fix; 408/429/5xx: the destination is busy or down.
    return status in (401, 403, 408, 429) or status >= 500


class HttpSink:
    """POSTs each batch as one body built by `body` (NDJSON lines by default)."""

    content_type = "application/x-ndjson"

    def __init__(self, url: str, client: httpx.AsyncClient, token: str | None = None) -> None:
        self.url = url
        self.client = client
        self.headers = {"content-type": self.content_type}
        if token:
            self.headers["authorization"] = self.authorization(token)

    def authorization(self, token: str) -> str:
        return f"Bearer {token}"

    def bodies(self, events: Sequence[Event]) -> Iterable[bytes]:
        """The request bodies of a batch (one, unless a format splits it)."""
        yield b"".join(event.line + b"\n" for event in events)

    async def send(self, events: Sequence[Event]) -> Refused | None:
        refused: Refused | None = None
        for body in self.bodies(events):
            reply = await self.post(body)
            refused = self.check(reply, events) or refused
        return refused

    async def post(self, body: bytes) -> httpx.Response:
        try:
            return await self.client.post(self.url, content=body, headers=self.headers)
        except (OutboundRefused, OutboundUnresolved) as exc:
            raise DestinationError(f"{self.url} may not be called: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise DestinationError(
                f"{self.url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except (httpx.HTTPError, OSError) as exc:
            # OSError: a socket error httpx let through is a network failure too (retried);
            # any other error is taken as a bug and the batch is counted failed (the lane)
            raise DestinationError(f"{self.url}: {type(exc).__name__} {exc}".strip()) from exc

    def check(self, reply: httpx.Response, events: Sequence[Event]) -> Refused | None:
        """Raise unless the reply accepts the batch; what it refused of it for good."""
        if 200 <= reply.status_code < 300:
            return None
        reason = f"{self.url} answered HTTP {reply.status_code}: {reply.text[:REASON_CHARS]}"
        if _retryable_status(reply.status_code):
            raise DestinationError(reason)
        raise DestinationRejected(reason)

    async def close(self) -> None:
        await self.client.aclose()


class LogBatchSink(HttpSink):
    """log_forward_url's format: `{"log_type": ..., "data": [line, ...]}` per log type."""

    content_type = "application/json"

    def bodies(self, events: Sequence[Event]) -> Iterable[bytes]:
        runs: list[tuple[str, list[bytes]]] = []
        for event in events:
            if runs and runs[-1][0] == event.source:
                runs[-1][1].append(event.line)
            else:
                runs.append((event.source, [event.line]))
        for source, lines in runs:
            yield b'{"log_type":%s,"data":[%s]}' % (orjson.dumps(source), b",".join(lines))


class HecSink(HttpSink):
    """Splunk's HTTP Event Collector: event JSON objects, one after another.

    Each event is `{"time", "host", "source": "fleetwatch", "sourcetype": "fleetwatch:<source>",
    "index"?, "event": <the event>}`; the token goes as `Authorization: Splunk <token>`.
    """

    content_type = "application/json"

    def __init__(
        self, url: str, client: httpx.AsyncClient, token: str | None, index: str | None
    ) -> None:
        super().__init__(url, client, token)
        self.index = index

    def authorization(self, token: str) -> str:
        return f"Splunk {token}"

    def bodies(self, events: Sequence[Event]) -> Iterable[bytes]:
        parts = []
        for event in events:
            meta: dict[str, Any] = {
                "time": round(event.time, 3),
                "source": "fleetwatch",
                "sourcetype": f"fleetwatch:{event.source}",
            }
            if event.host is not None:
                meta["host"] = event.host
            if self.index:
                meta["index"] = self.index
            parts.append(orjson.dumps(meta)[:-1] + b',"event":' + event.line + b"}")
        yield b"\n".join(parts)


class BulkSink(HttpSink):
    """Elasticsearch's bulk API: an `index` action with the event's `_id`, then the event.

    A repeat of an event (a retried batch, osquery's resend) overwrites the document with
    the same `_id`. Items refused with 429 or 5xx make the whole batch retried; items refused
    otherwise (a mapping error) are counted as failed and not retried.
    """

    def __init__(self, url: str, client: httpx.AsyncClient, token: str | None, index: str) -> None:
        super().__init__(url.rstrip("/") + "/_bulk", client, token)
        self.index = index

    def authorization(self, token: str) -> str:
        return f"ApiKey {token}"

    def bodies(self, events: Sequence[Event]) -> Iterable[bytes]:
        parts = []
        for event in events:
            action = {"index": {"_index": self.index, "_id": event.id}}
            parts.append(orjson.dumps(action) + b"\n" + event.line + b"\n")
        yield b"".join(parts)

    def check(self, reply: httpx.Response, events: Sequence[Event]) -> Refused | None:
        super().check(reply, events)
        try:
            answer = orjson.loads(reply.content)
        except orjson.JSONDecodeError as exc:
            raise DestinationError(f"{self.url} answered something not JSON") from exc
        if not isinstance(answer, dict) or not answer.get("errors"):
            return None
        statuses: list[tuple[int, str]] = []
        for item in answer.get("items") or ():
            result: dict[str, Any] = next(iter(item.values()), {}) if isinstance(item, dict) else {}
            status = int(result.get("status") or 0)
            if status >= 300:
                statuses.append((status, str(result.get("error"))[:REASON_CHARS]))
        if any(_retryable_status(status) for status, _ in statuses):
            status, error = next(s for s in statuses if _retryable_status(s[0]))
            raise DestinationError(
                f"{self.url}: {len(statuses)} of {len(events)} items refused, some for now "
                f"(HTTP {status}: {error}); the batch is sent again"
            )
        if not statuses:
            return None
        status, error = statuses[0]
        return Refused(len(statuses), f"{self.url} refused an item (HTTP {status}: {error})")
