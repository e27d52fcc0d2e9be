"""The guarded client over real loopback sockets: refused addresses get no connection, a
name is resolved once per connection and the checked address is the one connected to
(with the name kept for Host, SNI and the certificate check), redirects are not followed.

Names resolve through `StubResolver`; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import httpx
import pytest

from fleetwatch.outbound import (
    OutboundGuard,
    OutboundRefused,
    OutboundUnresolved,
    parse_networks,
)
from fleetwatch.outbound.guard import GuardedTransport
from fleetwatch.tls import ensure_self_signed
from tests.outbound.stub_resolver import StubResolver

LOOPBACK = parse_networks("127.0.0.0/8,::1/128")
LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=0)


@dataclass
class Target:
    """A tiny HTTP/1.1 server on 127.0.0.1 counting connections and recording requests."""

    port: int = 0
    connections: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI seen

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.split("\r\n")
        path = lines[0].split(" ")[1]
        host = next(ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("host:"))
        self.requests.append((path, host))
        if path == "/redirect":
            reply = f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{self.port}/ok\r\n"
        else:
            reply = "HTTP/1.1 200 OK\r\n"
        writer.write((reply + "Content-Length: 2\r\nConnection: close\r\n\r\nok").encode())
        await writer.drain()
        writer.close()


async def serve(context: ssl.SSLContext | None = None) -> tuple[Target, asyncio.Server]:
    target = Target()
    server = await asyncio.start_server(target.handle, "127.0.0.1", 0, ssl=context)
    target.port = server.sockets[0].getsockname()[1]
    return target, server


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    found, server = await serve()
    yield found
    server.close()
    await server.wait_closed()


async def get(guard: OutboundGuard, url: str) -> httpx.Response:
    async with guard.client(5.0, LIMITS) as client:
        return await client.get(url)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0x7f000001", "2130706433", "127.1", "[::ffff:127.0.0.1]"]
)
async def test_loopback_in_any_spelling_is_refused_without_a_connection(
    target: Target, host: str
) -> None:
    url = f"http://{host}:{target.port}/ok"
    with pytest.raises(OutboundRefused, match="is loopback; the operator can allow"):
        await OutboundGuard().check_url(url)
    with pytest.raises(OutboundRefused, match="loopback"):
        await get(OutboundGuard(), url)
    assert target.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "0x7f000001", "127.1", "[::ffff:127.0.0.1]"])
async def test_allowed_loopback_is_reached(target: Target, host: str) -> None:
    guard = OutboundGuard(LOOPBACK)
    url = f"http://{host}:{target.port}/ok"
    await guard.check_url(url)
    reply = await get(guard, url)
    assert reply.status_code == 200 and target.requests == [("/ok", f"{host}:{target.port}")]


@pytest.mark.parametrize(
    ("answer", "word"),
    [
        ("10.0.0.1", "a private"),
        ("169.254.169.254", "a link-local"),
        ("::ffff:127.0.0.1", "a loopback"),
        ("127.0.0.1", "a loopback"),
    ],
)
async def test_names_resolving_inside_are_refused(answer: str, word: str) -> None:
    stub = StubResolver({"hook.invalid": [answer]})
    with pytest.raises(OutboundRefused) as caught:
        await OutboundGuard(resolver=stub).check_url("http://hook.invalid/x")
    assert str(caught.value).startswith(f"host hook.invalid resolves to {word} address")
    assert answer not in str(caught.value)
    assert stub.calls == ["hook.invalid"]


async def test_one_inside_answer_refuses_the_name(target: Target) -> None:
    stub = StubResolver({"hook.invalid": ["127.0.0.1", "10.0.0.1"]})
    guard = OutboundGuard(LOOPBACK, stub)
    with pytest.raises(OutboundRefused, match="private"):
        await get(guard, f"http://hook.invalid:{target.port}/ok")
    assert target.connections == 0


async def test_the_checked_address_is_connected_with_the_name_as_host(target: Target) -> None:
    stub = StubResolver({"hook.invalid": ["127.0.0.1"]})
    guard = OutboundGuard(LOOPBACK, stub)
    reply = await get(guard, f"http://hook.invalid:{target.port}/ok")
    assert reply.status_code == 200
    assert target.requests == [("/ok", f"hook.invalid:{target.port}")]
    assert stub.calls == ["hook.invalid"]


async def test_rebinding_after_the_check_is_refused_at_connect_time(target: Target) -> None:
    stub = StubResolver({"rebind.invalid": ["127.0.0.1"]})
    guard = OutboundGuard(LOOPBACK, stub)
    url = f"http://rebind.invalid:{target.port}/ok"
    await guard.check_url(url)  # accepted: the first answer is allowed
    stub.answers["rebind.invalid"] = ["10.0.0.1"]
    with pytest.raises(OutboundRefused, match="resolves to a private address"):
        await get(guard, url)
    assert stub.calls == ["rebind.invalid", "rebind.invalid"]  # looked up again to connect
    assert target.connections == 0


async def test_redirects_are_not_followed(target: Target) -> None:
    reply = await get(OutboundGuard(LOOPBACK), f"http://127.0.0.1:{target.port}/redirect")
    assert reply.status_code == 302
    assert [path for path, _ in target.requests] == ["/redirect"]


async def test_unresolvable_names() -> None:
    guard = OutboundGuard(LOOPBACK, StubResolver())
    with pytest.raises(OutboundUnresolved, match="host nowhere.invalid does not resolve"):
        await guard.check_url("http://nowhere.invalid/x")
    with pytest.raises(httpx.ConnectError):
        await get(guard, "http://nowhere.invalid/x")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "expected an http:// or https:// URL"),
        ("http://0177.0.0.1/x", "not a valid URL"),  # httpx refuses octal outright
        ("http://08.0.0.1/x", "not a valid URL"),
        ("http://[fe80::1%25eth0]/x", "zone ids are not allowed"),
    ],
)
async def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(OutboundRefused, match=message):
        await OutboundGuard(LOOPBACK, StubResolver()).check_url(url)


async def test_a_host_the_url_parser_let_through_is_still_read_as_an_address() -> None:
    """The connect-time check reads odd spellings itself (httpcore hands it the raw host)."""
    guard = OutboundGuard(resolver=StubResolver())
    with pytest.raises(OutboundRefused, match="address 127.0.0.1 is loopback"):
        await guard.addresses("0177.0.0.1", 80)
    with pytest.raises(OutboundRefused, match="neither a name nor a valid IPv4 address"):
        await guard.addresses("08.0.0.1", 80)


async def test_tls_keeps_the_name_for_sni_and_the_certificate(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, "hook.invalid")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    target, server = await serve(server_context)
    server_context.sni_callback = lambda _sock, name, _ctx: target.server_names.append(name)
    client_context = ssl.create_default_context(cafile=str(cert))
    stub = StubResolver({"hook.invalid": ["127.0.0.1"], "other.invalid": ["127.0.0.1"]})
    guard = OutboundGuard(LOOPBACK, stub)
    try:
        async with guard.client(5.0, LIMITS, client_context) as client:
            reply = await client.get(f"https://hook.invalid:{target.port}/ok")
            assert reply.status_code == 200
            assert target.server_names == ["hook.invalid"]
            assert target.requests == [("/ok", f"hook.invalid:{target.port}")]
            # the certificate is checked against the name, not the address connected to
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await client.get(f"https://other.invalid:{target.port}/ok")
    finally:
        server.close()
        await server.wait_closed()


def test_the_transport_is_built_from_public_apis_only() -> None:
    """No private attribute of httpx's transport (its `_pool`): an httpx release that
    renames one would otherwise break every webhook silently."""
    transport = GuardedTransport(OutboundGuard(LOOPBACK), LIMITS)
    assert isinstance(transport, httpx.AsyncBaseTransport)
    assert not isinstance(transport, httpx.AsyncHTTPTransport)
    assert [name for name in vars(transport) if name.startswith("_")] == []
    assert isinstance(transport.pool, httpcore.AsyncConnectionPool)


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"])
async def test_a_name_resolving_inside_is_refused_at_connect_time(
    target: Target, answer: str
) -> None:
    """Checked when the call connects (no check_url first), for each inside range; nothing is
    sent anywhere: the refusal comes before any connection."""
    stub = StubResolver({"inside.invalid": [answer]})
    with pytest.raises(OutboundRefused, match="resolves to a"):
        await get(OutboundGuard(resolver=stub), f"http://inside.invalid:{target.port}/ok")
    assert stub.calls == ["inside.invalid"] and target.connections == 0


async def test_outbound_allow_lets_a_name_reach_an_allowed_range(target: Target) -> None:
    stub = StubResolver({"inside.invalid": ["127.0.0.1"]})
    guard = OutboundGuard(parse_networks("127.0.0.0/8"), stub)
    reply = await get(guard, f"http://inside.invalid:{target.port}/ok")
    assert reply.status_code == 200 and target.connections == 1
    stub.answers["inside.invalid"] = ["169.254.169.254"]  # allowed: loopback only
    with pytest.raises(OutboundRefused, match="link-local"):
        await get(guard, f"http://inside.invalid:{target.port}/ok")
    assert target.connections == 1


async def test_httpcore_errors_reach_callers_as_httpx_errors() -> None:
    """A target that accepts and never answers: the read times out as httpx.ReadTimeout;
    one that closes at once: httpx.RemoteProtocolError (what webhooks catch as HTTPError)."""

    done = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.read(1)
        await done.wait()
        writer.close()
        await writer.wait_closed()

    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    guard = OutboundGuard(LOOPBACK)
    for handler, error in ((silent, httpx.ReadTimeout), (rude, httpx.RemoteProtocolError)):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with guard.client(0.3, LIMITS) as client:
                with pytest.raises(error):
                    await client.get(f"http://127.0.0.1:{port}/x")
        finally:
            done.set()
            await asyncio.gather(*handlers)
            server.close()
            await server.wait_closed()


async def test_a_body_is_sent_and_a_streamed_answer_read_as_it_arrives() -> None:
    received: list[bytes] = []

    async def echo_big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        received.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(64):
            writer.write(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo_big, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with OutboundGuard(LOOPBACK).client(5.0, LIMITS) as client:
            body = b'{"n": 1}' * 1000
            async with client.stream("PATCH", f"http://127.0.0.1:{port}/x", content=body) as reply:
                chunks = [chunk async for chunk in reply.aiter_raw()]
        assert received == [body]
        assert reply.status_code == 200 and sum(map(len, chunks)) == 64 * 0x4000
        assert len(chunks) > 1
    finally:
        server.close()
        await server.wait_closed()
