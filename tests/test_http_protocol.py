"""One socket write per sized response (fleetwatch.http_protocol), over a real loopback socket:
head and body together for a response with a Content-Length, head first for a stream and a
HEAD answer, keep-alive and pipelined requests intact, and `fleetwatch serve` uses it."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from fleetwatch.config import Settings
from fleetwatch.http_protocol import (
    DISCONNECT,
    TESTED_UVICORN,
    OneWriteProtocol,
    checked_protocol,
    uvicorn_internals_problem,
)
from fleetwatch.osquery.protocol import AgentProtocol
from fleetwatch.server import uvicorn_config
from tests.services import free_port

WRITES: list[bytes] = []


class _Recording:
    """The server side's transport, recording each write (then writing it)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class RecordingProtocol(OneWriteProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(_Recording(transport))  # type: ignore[arg-type]


async def sized(_: Request) -> Response:
    return JSONResponse({"queries": {}})


async def streamed(_: Request) -> Response:
    async def chunks() -> Any:
        yield b"one,"
        await asyncio.sleep(0)
        yield b"two"

    return StreamingResponse(chunks(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/sized", sized, methods=["GET", "HEAD", "POST"]),
        Route("/streamed", streamed),
    ]
)


async def _exchange(port: int, raw: bytes, replies: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = b""
    while data.count(b"HTTP/1.1 ") < replies or not _complete(data):
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, data
        data += chunk
    writer.close()
    return data


def _complete(data: bytes) -> bool:
    return data.endswith((b"}", b"0\r\n\r\n", b"\r\n\r\n"))


async def _serve_and(requests: list[tuple[bytes, int]]) -> list[tuple[bytes, list[bytes]]]:
    port = free_port()
    config = uvicorn.Config(APP, port=port, http=RecordingProtocol, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    out = []
    try:
        for raw, replies in requests:
            WRITES.clear()
            data = await _exchange(port, raw, replies)
            await asyncio.sleep(0.05)  # let the server finish its writes
            out.append((data, list(WRITES)))
    finally:
        server.should_exit = True
        await task
    return out


def _get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode()


def test_sized_responses_go_out_in_one_write() -> None:
    post = b"POST /sized HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
    (one, pipelined, head, stream) = asyncio.run(
        _serve_and(
            [
                (_get("/sized"), 1),
                (post + _get("/sized") + post, 3),
                (_get("/sized", "HEAD"), 1),
                (_get("/streamed"), 1),
            ]
        )
    )
    data, writes = one
    assert len(writes) == 1 and writes[0] == data
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b'{"queries":{}}')
    # Keep-alive and pipelined requests: three replies, each one write, in order.
    data, writes = pipelined
    assert len(writes) == 3 and b"".join(writes) == data
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b'{"queries":{}}') for w in writes)
    # HEAD: no body follows, so the head is written alone.
    data, writes = head
    assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\n") and b"{" not in data
    # A stream without a Content-Length: its head goes out before its first chunk.
    data, writes = stream
    assert writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b"\r\n\r\n")
    assert len(writes) >= 3 and b"one," in data and b"two" in data


def test_fleetwatch_serve_uses_it(tmp_path: Any) -> None:
    config = uvicorn_config(Settings(data_dir=tmp_path / "data", port=free_port()))
    assert config.http is AgentProtocol


def test_the_app_is_told_when_a_client_goes_away_before_its_answer() -> None:
    """The DISCONNECT extension: a callback registered by a request is called once when its
    client leaves before the response, and never for a request that was answered."""
    calls: list[str] = []
    holding = asyncio.Event()
    release_seen = asyncio.Event()

    async def hold(request: Request) -> Response:
        release = asyncio.Event()

        def gone() -> None:
            calls.append(request.url.path)
            release.set()
            release_seen.set()

        request.scope["extensions"][DISCONNECT](gone)
        if request.url.path == "/hold":
            holding.set()
            await release.wait()
        return JSONResponse({})

    app = Starlette(routes=[Route("/hold", hold), Route("/answered", hold)])

    async def scenario() -> None:
        port = free_port()
        config = uvicorn.Config(
            app, port=port, http=OneWriteProtocol, log_level="warning", timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            await _exchange(port, _get("/answered"), 1)  # answered, then the client leaves
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get("/hold"))
            await holding.wait()
            writer.close()
            # the held request is let go by the client's leaving alone
            await asyncio.wait_for(release_seen.wait(), 30)
        finally:
            server.should_exit = True
            await task

    asyncio.run(scenario())
    assert calls == ["/hold"]


# --- the uvicorn internals it relies on -------------------------------------------------------


def test_the_installed_uvicorn_has_the_internals_it_needs() -> None:
    assert uvicorn_internals_problem() is None
    assert checked_protocol() is OneWriteProtocol


def test_the_pinned_uvicorn_range_is_the_tested_one() -> None:
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert f'"uvicorn[standard]{TESTED_UVICORN}"' in pyproject
    installed = tuple(int(p) for p in version("uvicorn").split(".")[:2])
    low, high = (
        tuple(int(p) for p in bound.lstrip("<>=").split(".")[:2])
        for bound in TESTED_UVICORN.split(",")
    )
    assert low <= installed < high


class _NoHook(HttpToolsProtocol):
    _start_asgi_task = None  # type: ignore[assignment]


class _OtherHook(HttpToolsProtocol):
    def _start_asgi_task(self, cycle: Any, app: Any, extra: Any) -> None:  # type: ignore[override]
        raise AssertionError("never called")


class _NotCalled(HttpToolsProtocol):
    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1


class _OtherCycle:
    def __init__(self, scope: Any, transport: Any) -> None:
        self.scope = scope
        self.writer = transport
        self.response_started = self.response_complete = False


@pytest.mark.parametrize(
    ("protocol", "cycle", "problem"),
    [
        (_NoHook, RequestResponseCycle, "HttpToolsProtocol._start_asgi_task is gone"),
        (_OtherHook, RequestResponseCycle, "_start_asgi_task now takes ('cycle', 'app', 'extra')"),
        (_NotCalled, RequestResponseCycle, "on_response_complete no longer calls _start_asgi_task"),
        (HttpToolsProtocol, _OtherCycle, "RequestResponseCycle no longer sets transport"),
    ],
)
def test_a_changed_uvicorn_is_named_not_served(protocol: Any, cycle: Any, problem: str) -> None:
    found = uvicorn_internals_problem(protocol, cycle)
    assert found is not None and problem in found


def test_start_up_stops_with_a_clear_message_when_uvicorn_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delattr(HttpToolsProtocol, "_start_asgi_task")
    with pytest.raises(SystemExit) as stopped:
        uvicorn_config(Settings(data_dir=tmp_path))
    message = str(stopped.value)
    assert "uses uvicorn internals that uvicorn" in message
    assert "_start_asgi_task is gone" in message
    assert f"install uvicorn{TESTED_UVICORN}" in message
