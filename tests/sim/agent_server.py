"""A small real osquery agent-API server on loopback that the simulator tests talk to.

It speaks the protocol (enroll, config, log, distributed read/write), records every request,
and can be told to misbehave on the next requests to a path: garbage, HTML, an empty 500,
node_invalid, a hang past the client's timeout, or closing the connection. It is a real HTTP
server on a real socket, not a mock of the client.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson

ENROLL = "/api/v1/osquery/enroll"
CONFIG = "/api/v1/osquery/config"
LOG = "/api/v1/osquery/log"
READ = "/api/v1/osquery/distributed/read"
WRITE = "/api/v1/osquery/distributed/write"


@dataclass(frozen=True)
class Reply:
    """What the server does with one request."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    hang: float = 0.0  # seconds to wait before answering
    close: bool = False  # close the connection without answering

    @property
    def delivers(self) -> bool:
        """Whether osquery counts this reply as success (status codes do not matter)."""
        if self.hang or self.close:
            return False
        try:
            doc = orjson.loads(self.body) if self.body.strip() else {}
        except orjson.JSONDecodeError:
            return False
        return isinstance(doc, dict) and "error" not in doc and doc.get("node_invalid") is not True

    @classmethod
    def json(cls, doc: object, status: int = 200) -> Reply:
        return cls(status, orjson.dumps(doc))

    @classmethod
    def garbage(cls) -> Reply:
        return cls(200, b"\x00\x01not json at all{{", "application/octet-stream")

    @classmethod
    def html(cls) -> Reply:
        return cls(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")

    @classmethod
    def empty_500(cls) -> Reply:
        return cls(500, b"", "text/plain")

    @classmethod
    def node_invalid(cls) -> Reply:
        return cls.json({"node_invalid": True, "error": "invalid node key"}, 401)

    @classmethod
    def error(cls, message: str = "server trouble") -> Reply:
        return cls.json({"error": message}, 500)


@dataclass
class Recorded:
    """One request as received."""

    path: str
    headers: dict[str, str]
    raw: bytes
    doc: Any
    #: The reply was one osquery counts as success.
    accepted: bool = False


@dataclass
class AgentServer:
    """The server; `await server.start()` returns its base URL."""

    secret: str = "s3cret"
    config: dict[str, Any] = field(
        default_factory=lambda: {"options": {"distributed_interval": 1, "logger_tls_period": 1}}
    )
    queries: dict[str, str] = field(default_factory=dict)
    discovery: dict[str, str] = field(default_factory=dict)
    accelerate: object = None
    requests: list[Recorded] = field(default_factory=list)
    node_keys: dict[str, str] = field(default_factory=dict)  # key -> host_identifier
    script: dict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _keys: itertools.count[int] = field(default_factory=itertools.count)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

    # -- what tests look at ------------------------------------------------------------------

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def writes(self) -> list[dict[str, Any]]:
        """Distributed writes the server accepted."""
        return [r.doc for r in self.to(WRITE) if r.accepted]

    def log_lines(self, log_type: str) -> list[dict[str, Any]]:
        """Log lines of this type in the posts the server accepted."""
        lines: list[dict[str, Any]] = []
        for r in self.to(LOG):
            if r.accepted and isinstance(r.doc, dict) and r.doc.get("log_type") == log_type:
                lines.extend(r.doc["data"])
        return lines

    def revoke_all(self) -> None:
        """Forget every node key, like a server whose hosts were deleted."""
        self.node_keys.clear()

    # -- serving -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                reply = self._reply(request)
                if reply.hang:
                    await asyncio.sleep(reply.hang)
                if reply.close:
                    return
                head = (
                    f"HTTP/1.1 {reply.status} X\r\nContent-Type: {reply.content_type}\r\n"
                    f"Content-Length: {len(reply.body)}\r\n\r\n"
                ).encode()
                writer.write(head + reply.body)
                await writer.drain()
        except (ConnectionError, httptools.HttpParserError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _reply(self, request: Recorded) -> Reply:
        self.requests.append(request)
        reply = self._decide(request)
        request.accepted = reply.delivers
        return reply

    def _decide(self, request: Recorded) -> Reply:
        scripted = self.script.get(request.path)
        if scripted:
            return scripted.popleft()
        doc = request.doc if isinstance(request.doc, dict) else {}
        if request.path == ENROLL:
            if doc.get("enroll_secret") != self.secret:
                return Reply.json({"node_invalid": True, "error": "invalid enroll secret"}, 401)
            new_key = f"key-{next(self._keys)}"
            self.node_keys[new_key] = str(doc.get("host_identifier"))
            return Reply.json({"node_key": new_key})
        key = doc.get("node_key")
        header = request.headers.get("authorization", "")
        if not isinstance(key, str) or key not in self.node_keys or header != f"NodeKey {key}":
            return Reply.node_invalid()
        if request.path == CONFIG:
            return Reply.json(self.config)
        if request.path == READ:
            answer: dict[str, Any] = {"queries": self.queries}
            if self.discovery:
                answer["discovery"] = self.discovery
            if self.accelerate is not None:
                answer["accelerate"] = self.accelerate
            return Reply.json(answer)
        if request.path in (WRITE, LOG):
            return Reply.json({})
        return Reply.json({"error": f"no such endpoint {request.path}"}, 404)


class _Parsed:
    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


async def _read_request(reader: asyncio.StreamReader) -> Recorded | None:
    parsed = _Parsed()
    parser = httptools.HttpRequestParser(parsed)
    while not parsed.done:
        data = await reader.read(65536)
        if not data:
            return None
        parser.feed_data(data)
    raw = b"".join(parsed.body)
    body = raw
    if parsed.headers.get("content-encoding") == "gzip":
        body = gzip.decompress(raw)
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    return Recorded(parsed.url.decode(), parsed.headers, raw, doc)
