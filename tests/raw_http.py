"""osquery-shaped POSTs over raw keep-alive sockets, for tests that need control of the wire:
a body sent in two parts, a connection dropped mid-request or mid-hold, thousands at once.

httpx hides when bytes leave and cannot drop a connection half-way; this does nothing else
(HTTP/1.1, Content-Length bodies, one request at a time per connection).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from tests.agent import details_for

SECRET = "test-enroll-secret"


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def post_bytes(path: str, body: bytes, node_key: str | None = None) -> tuple[bytes, bytes]:
    """A POST as osquery sends it, split into its head and its body."""
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "User-Agent: osquery/5.23.1",
        "Accept: application/json",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if node_key is not None:
        head.append(f"Authorization: NodeKey {node_key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode(), body


def enroll_body(name: str, secret: str = SECRET) -> bytes:
    """An enroll body with host details, as osquery 5 sends it."""
    return orjson.dumps(
        {
            "enroll_secret": secret,
            "host_identifier": name,
            "platform_type": "9",
            "host_details": details_for(name, name),
        }
    )


class RawConnection:
    """One keep-alive connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"  # loopback only
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> RawReply:
        """Read one response (sized by its Content-Length)."""
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await self.reader.readexactly(int(headers["content-length"]))
        body = orjson.loads(raw) if raw else {}
        assert isinstance(body, dict)  # osquery can parse every reply
        return RawReply(status, headers, body)

    async def post(
        self, path: str, payload: dict[str, Any], node_key: str | None = None
    ) -> RawReply:
        head, body = post_bytes(path, orjson.dumps(payload), node_key)
        await self.send(head + body)
        return await self.reply()

    async def close(self) -> None:
        """Drop the connection (the server sees the peer go away)."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
