"""The agent's HTTP client against real loopback servers: keep-alive, reconnect, timeout,
redirects, body framings, and HTTPS verified against a CA file."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fleetwatch.sim.transport import Connection, Server, TransportError, UrlError
from fleetwatch.tls import ensure_self_signed

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def ok(body: bytes = b"{}", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class RawServer:
    """Reads each request head+body, lets `handler` answer; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.handler(request, reader, writer):
                    return
        finally:
            self.writers.discard(writer)
            writer.close()


@asynccontextmanager
async def serving(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[RawServer, int]]:
    raw = RawServer(handler)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield raw, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in list(raw.writers):
            writer.transport.abort()
        while raw.writers:  # let each handler see its socket closed and return
            await asyncio.sleep(0.01)
        await server.wait_closed()


async def answer_ok(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
    w.write(ok(b'{"seen": %d}' % len(request)))
    await w.drain()
    return True


async def test_keep_alive_reuses_one_connection_and_sends_osquery_headers() -> None:
    async with serving(answer_ok) as (raw, port):
        conn = Connection(Server.from_url(f"http://127.0.0.1:{port}/prefix"))
        first = await conn.post("/api/x", b'{"a":1}', headers=(("Authorization", "NodeKey k"),))
        await conn.post("/api/x", b"{}")
        conn.close()
    assert first.status == 200 and first.body.startswith(b'{"seen"')
    assert raw.connections == 1
    head = raw.requests[0].decode()
    assert head.startswith("POST /prefix/api/x HTTP/1.1\r\n")
    for header in (
        f"Host: 127.0.0.1:{port}",
        "User-Agent: osquery/5.23.1",
        "Content-Type: application/json",
        "Accept: application/json",
        "Authorization: NodeKey k",
    ):
        assert header in head


async def test_reconnects_once_when_the_server_closed_the_idle_socket() -> None:
    async def answer_then_close(
        request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> bool:
        w.write(ok())
        await w.drain()
        return False  # close after each answer, without saying so

    async with serving(answer_then_close) as (raw, port):
        conn = Connection(Server.from_url(f"http://127.0.0.1:{port}"))
        for _ in range(3):
            assert (await conn.post("/x", b"{}")).status == 200
            await asyncio.sleep(0.05)
        conn.close()
    assert raw.connections == 3


async def test_timeout_is_one_deadline_for_the_whole_request() -> None:
    async def hang(request: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await r.read()  # never answer; return once the client gives up and closes
        return False

    async with serving(hang) as (_, port):
        conn = Connection(Server.from_url(f"http://127.0.0.1:{port}"))
        with pytest.raises(TransportError, match="timed out"):
            await conn.post("/x", b"{}", timeout=0.2)
        assert not conn.is_open


async def test_follows_redirects_and_gives_up_after_ten() -> None:
    async def redirect(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        if request.startswith(b"POST /old "):
            w.write(b"HTTP/1.1 307 Moved\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n")
        elif request.startswith(b"POST /loop "):
            w.write(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
        else:
            w.write(ok(b'{"where": "new"}'))
        await w.drain()
        return True

    async with serving(redirect) as (raw, port):
        conn = Connection(Server.from_url(f"http://127.0.0.1:{port}"))
        assert (await conn.post("/old", b"{}")).body == b'{"where": "new"}'
        with pytest.raises(TransportError, match="redirects"):
            await conn.post("/loop", b"{}")
        conn.close()


async def test_chunked_and_close_delimited_bodies() -> None:
    async def chunked(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        if b"/chunked" in request:
            w.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'5\r\n{"a":\r\n4\r\n 1}\n\r\n0\r\n\r\n'
            )
            await w.drain()
            return True
        w.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"until": "eof"}')
        await w.drain()
        return False

    async with serving(chunked) as (_, port):
        conn = Connection(Server.from_url(f"http://127.0.0.1:{port}"))
        assert (await conn.post("/chunked", b"{}")).body == b'{"a": 1}\n'
        assert (await conn.post("/eof", b"{}")).body == b'{"until": "eof"}'
        assert not conn.is_open
        conn.close()


async def test_garbage_instead_of_http_is_a_transport_error() -> None:
    async def garbage(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"\x16\x03\x01 this is not http\r\n\r\n")
        await w.drain()
        return False

    async with serving(garbage) as (_, port):
        conn = Connection(Server.from_url(f"http://127.0.0.1:{port}"))
        with pytest.raises(TransportError):
            await conn.post("/x", b"{}")


async def test_no_keep_alive_closes_after_each_request() -> None:
    async with serving(answer_ok) as (raw, port):
        conn = Connection(Server.from_url(f"http://127.0.0.1:{port}"), keepalive=0)
        await conn.post("/x", b"{}")
        await conn.post("/x", b"{}")
    assert raw.connections == 2
    assert b"Connection: close" in raw.requests[0]


async def test_https_verifies_the_server_against_the_ca_file(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "good", "127.0.0.1")
    other, _ = ensure_self_signed(tmp_path / "other", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with serving(answer_ok, context) as (_, port):
        good = Connection(Server.from_url(f"https://127.0.0.1:{port}", ca_file=cert))
        assert (await good.post("/x", b"{}")).status == 200
        good.close()
        by_name = Connection(Server.from_url(f"https://localhost:{port}", ca_file=cert))
        assert (await by_name.post("/x", b"{}")).status == 200
        by_name.close()
        wrong = Connection(Server.from_url(f"https://127.0.0.1:{port}", ca_file=other))
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await wrong.post("/x", b"{}")


@pytest.mark.parametrize(
    ("url", "ca", "message"),
    [
        ("ftp://example.com", None, "http:// or https://"),
        ("http://", None, "no host"),
        ("http://example.com:99999", None, "invalid port"),
        ("http://example.com", "/etc/hosts", "needs an https://"),
        ("https://example.com", "/no/such/ca.pem", "does not exist"),
        ("https://example.com", "/etc/hostname", "no usable certificate"),
    ],
)
def test_unusable_urls_are_refused(url: str, ca: str | None, message: str) -> None:
    with pytest.raises(UrlError, match=message):
        Server.from_url(url, ca)
