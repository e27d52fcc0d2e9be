"""Where forwarded osquery logs go: JSON-lines files with rotation, or an HTTP endpoint.

These are Fleet's `filesystem` and `webhook` log destinations. A destination takes a batch
of already-serialised JSON lines of one log type and raises on failure; the forwarder owns
queueing, retries of nothing it cannot retry, and counting.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

import httpx

#: File name per log type, as Fleet's osquery_result_log_file / osquery_status_log_file.
FILE_NAMES = {"result": "osquery_result.log", "status": "osquery_status.log"}


class DestinationError(Exception):
    """A batch could not be delivered; the message says why."""


class Destination(Protocol):
    """Something forwarded log lines are written to."""

    #: Short name for metrics and logs: `file` or `http`.
    name: str

    async def send(self, log_type: str, lines: list[bytes]) -> None:
        """Deliver one batch of JSON lines of `log_type`; raise DestinationError if not."""
        ...

    async def close(self) -> None: ...


class FileDestination:
    """Appends JSON lines to one file per log type, rotated past `max_bytes`.

    Rotation keeps `backups` older files (`.1` newest); writes run in a worker thread so
    a slow disk never stalls the event loop.
    """

    name = "file"

    def __init__(self, directory: Path, max_bytes: int, backups: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups

    def path(self, log_type: str) -> Path:
        return self.directory / FILE_NAMES[log_type]

    async def send(self, log_type: str, lines: list[bytes]) -> None:
        try:
            await asyncio.to_thread(self._write, self.path(log_type), lines)
        except OSError as exc:
            raise DestinationError(f"cannot write {self.path(log_type)}: {exc}") from exc

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


class HttpDestination:
    """POSTs each batch as `{"log_type": ..., "data": [line, ...]}` to a URL.

    A batch is retried `attempts` times with doubling delays; a 2xx answer accepts it.
    """

    name = "http"

    def __init__(
        self, url: str, timeout: float, attempts: int = 3, retry_base: float = 0.5
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.retry_base = retry_base
        self._client = httpx.AsyncClient(timeout=timeout)

    async def send(self, log_type: str, lines: list[bytes]) -> None:
        body = b'{"log_type":"%s","data":[%s]}' % (log_type.encode(), b",".join(lines))
        reason = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.retry_base * 2 ** (attempt - 1))
            try:
                reply = await self._client.post(
                    self.url, content=body, headers={"content-type": "application/json"}
                )
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__} {exc}".strip()
                continue
            if 200 <= reply.status_code < 300:
                return
            reason = f"HTTP {reply.status_code}"
        raise DestinationError(
            f"{self.url} refused the batch after {self.attempts} tries: {reason}"
        )

    async def close(self) -> None:
        await self._client.aclose()
