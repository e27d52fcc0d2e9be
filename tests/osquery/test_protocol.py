"""Agents' POSTs served in the HTTP protocol (fleetwatch/osquery/protocol.py), over real sockets:
keep-alive, pipelining in order with other requests, bodies refused as the ASGI reader refuses
them, Connection: close and HTTP/1.0, Expect: 100-continue, a client gone mid-hold."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from fleetwatch.config import Settings
from fleetwatch.osquery.protocol import (
    AgentProtocol,
    agent_protocol_problem,
    checked_agent_protocol,
)
from tests.agent import wait_for_long_hold
from tests.osquery.test_faults import RawHost, leave_mid_hold
from tests.raw_http import enroll_body
from tests.server import RunningServer, running_server

ENROLL = "/api/v1/osquery/enroll"
CONFIG = "/api/v1/osquery/config"
READ = "/api/v1/osquery/distributed/read"
LIMIT = 64 * 1024


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Wire:
    """One connection, bytes in, replies out (sized by Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Wire:
        parts = urlsplit(url)
        return cls(*await asyncio.open_connection(parts.hostname, parts.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> Reply:
        status_line = await self.reader.readline()
        assert status_line, "the server closed the connection"
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Reply(int(status_line.split()[1]), headers, body)

    async def closed_by_server(self) -> bool:
        return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", "Content-Type: application/json"]
    if not any(line.lower().startswith("transfer-encoding") for line in extra):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def keyed(node_key: str) -> bytes:
    return orjson.dumps({"node_key": node_key})


@pytest.fixture
def server(server_settings: Settings) -> Iterator[RunningServer]:
    with running_server(server_settings.model_copy(update={"max_body_bytes": LIMIT})) as s:
        yield s


def asgi_calls(server: RunningServer) -> list[str]:
    """Agent requests that reach the ASGI path (`LeanAgentApp.serve`) from now on."""
    lean = server.app.lean  # type: ignore[attr-defined]
    calls: list[str] = []
    serve = lean.serve

    async def counted(route: Any, scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await serve(route, scope, receive, send)

    lean.serve = counted
    return calls


async def enroll(wire: Wire, name: str) -> str:
    await wire.send(post(ENROLL, enroll_body(name)))
    answer = await wire.reply()
    assert answer.status == 200, answer.body
    key: str = answer.json()["node_key"]
    return key


def test_fleetwatch_serve_serves_agents_in_the_protocol() -> None:
    assert agent_protocol_problem() is None
    assert checked_agent_protocol() is AgentProtocol


def test_several_requests_on_one_keep_alive_connection(server: RunningServer) -> None:
    asgi = asgi_calls(server)

    async def scenario() -> list[Reply]:
        wire = await Wire.open(server.url)
        key = await enroll(wire, "keeper")
        replies = []
        for request in (
            post(CONFIG, keyed(key)),
            post(READ, keyed(key), "X-Request-ID: given-id-1"),
            post(READ, keyed(key)),
            get("/healthz"),  # not an agent request: uvicorn's path, same connection
            get(CONFIG),  # an agent path, another method: FastAPI's 405
            post(CONFIG, keyed("no-such-key")),
        ):
            await wire.send(request)
            replies.append(await wire.reply())
        await wire.close()
        return replies

    config, read, read_again, health, wrong_method, invalid = asyncio.run(scenario())
    assert config.status == 200 and "options" in config.json()
    assert read.status == 200 and read.json()["queries"]  # its detail queries
    assert read.headers["x-request-id"] == "given-id-1"
    assert read_again.headers["x-request-id"] != config.headers["x-request-id"]
    for answer in (config, read, read_again, invalid):
        assert answer.headers["content-type"] == "application/json"
        assert int(answer.headers["content-length"]) == len(answer.body)
        assert {"date", "server"} <= answer.headers.keys() and "connection" not in answer.headers
    assert health.status == 200 and health.json()["status"] in ("ok", "degraded")
    assert wrong_method.status == 405
    assert invalid.status == 401 and invalid.json()["node_invalid"] is True
    assert asgi == []  # every agent POST was served by the protocol


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    async def scenario() -> list[Reply]:
        wire = await Wire.open(server.url)
        key = await enroll(wire, "piper")
        await wire.send(
            post(CONFIG, keyed(key))
            + get("/healthz")
            + post(READ, keyed(key))
            + post(ENROLL, enroll_body("intruder", secret="wrong"))
            + post(CONFIG, keyed(key))
        )
        replies = [await wire.reply() for _ in range(5)]
        await wire.close()
        return replies

    config, health, read, intruder, config_again = asyncio.run(scenario())
    assert config.status == 200 and "options" in config.json()
    assert health.status == 200 and "status" in health.json()
    assert read.status == 200 and "queries" in read.json()
    assert intruder.status == 401 and intruder.json()["node_invalid"] is True
    assert config_again.body == config.body


def test_bodies_are_refused_as_the_body_reader_refuses_them(server: RunningServer) -> None:
    big = orjson.dumps({"node_key": "k", "pad": "x" * LIMIT})
    bomb = gzip.compress(orjson.dumps({"node_key": "k", "pad": "0" * (4 * LIMIT)}))
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)

    async def scenario() -> tuple[list[Reply], Reply, Reply]:
        wire = await Wire.open(server.url)
        key = await enroll(wire, "sender")
        replies = []
        for request in (
            post(CONFIG, b"{not json"),
            post(CONFIG, b"[1, 2]"),
            post(CONFIG, b""),
            post(CONFIG, gzip.compress(keyed(key)), "Content-Encoding: gzip"),
            post(CONFIG, b"\x1f\x8b not gzip at all", "Content-Encoding: gzip"),
            post(CONFIG, gzip.compress(keyed(key))[:-8], "Content-Encoding: gzip"),
            post(CONFIG, bomb, "Content-Encoding: gzip"),
            post(CONFIG, keyed(key), "Content-Encoding: br"),
            post(CONFIG, chunked, "Transfer-Encoding: chunked"),  # over the limit as it comes
            post(CONFIG, keyed(key)),  # the connection still serves after every refusal
        ):
            await wire.send(request)
            replies.append(await wire.reply())
        await wire.close()
        # a declared Content-Length over the limit: refused before its body is sent
        wire = await Wire.open(server.url)
        head = post(CONFIG, b"")[: -len(b"Content-Length: 0\r\n\r\n")]
        await wire.send(head + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1))
        declared = await wire.reply()
        await wire.close()
        # a gzip body as osquery sends it, to enroll
        wire = await Wire.open(server.url)
        await wire.send(
            post(ENROLL, gzip.compress(enroll_body("zipped")), "Content-Encoding: gzip")
        )
        zipped = await wire.reply()
        await wire.close()
        return replies, declared, zipped

    replies, declared, zipped = asyncio.run(scenario())
    expected = [
        (400, "not valid JSON"),
        (400, "must be a JSON object"),
        (400, "empty body"),
        (200, None),
        (400, "not valid gzip data"),
        (400, "gzip body is truncated"),
        (413, "the decompressed body exceeds"),
        (400, "unsupported Content-Encoding 'br'"),
        (413, "the body exceeds"),
        (200, None),
    ]
    for answer, (status, message) in zip(replies, expected, strict=True):
        assert answer.status == status, (answer.status, answer.body)
        if message is not None:
            assert message in answer.json()["error"]
        else:
            assert "options" in answer.json()
    assert declared.status == 413 and "declared Content-Length" in declared.json()["error"]
    assert zipped.status == 200 and zipped.json()["node_key"]


def test_connection_close_and_http_1_0_close_after_the_answer(server: RunningServer) -> None:
    async def scenario() -> list[tuple[Reply, bool]]:
        wire = await Wire.open(server.url)
        key = await enroll(wire, "closer")
        await wire.close()
        results = []
        for request in (
            post(CONFIG, keyed(key), "Connection: close"),
            post(CONFIG, keyed(key), version="1.0"),
        ):
            wire = await Wire.open(server.url)
            await wire.send(request)
            answer = await wire.reply()
            results.append((answer, await wire.closed_by_server()))
            await wire.close()
        return results

    for answer, closed in asyncio.run(scenario()):
        assert answer.status == 200 and "options" in answer.json()
        assert answer.headers["connection"] == "close" and closed


def test_expect_100_continue_is_answered_before_the_body(server: RunningServer) -> None:
    async def scenario() -> tuple[bytes, Reply]:
        wire = await Wire.open(server.url)
        body = enroll_body("patient")
        request = post(ENROLL, body, "Expect: 100-continue")
        await wire.send(request[: -len(body)])
        interim = await wire.reader.readuntil(b"\r\n\r\n")
        await wire.send(body)
        answer = await wire.reply()
        await wire.close()
        return interim, answer

    interim, answer = asyncio.run(scenario())
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.status == 200 and answer.json()["node_key"]


HOLD = 60.0


@pytest.fixture
def holding(server_settings: Settings) -> Iterator[RunningServer]:
    with running_server(server_settings.model_copy(update={"distributed_hold": HOLD})) as s:
        yield s


def test_a_client_gone_mid_hold_is_let_go_at_once(holding: RunningServer) -> None:
    """A held read served by the protocol is let go when its client leaves, not at the end
    of its hold, and nothing is left counted. (A request pipelined behind a held read pauses
    reading, as uvicorn does, so a client leaving then is seen only once the hold ends.)"""
    host = RawHost(holding.url, "pipeliner")

    async def setup() -> None:
        await host.enroll()
        await host.answer_all()
        await host.close()

    asyncio.run(setup())
    wait_for_long_hold(host.host_id(holding), HOLD, holding.settings.distributed_interval, 1 / 6)
    asgi = asgi_calls(holding)
    leave_mid_hold(holding, host)  # let go when it left (its hold is at least 10 s away)
    assert asgi == []
