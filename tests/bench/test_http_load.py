"""The benchmark load generator: request building, connection split, and its response
parsing against a real loopback server that answers in fragments."""

from __future__ import annotations

import asyncio
import os

from bench._http_load import cpu_seconds, post_requests, run_phase, split


def test_post_requests_are_complete_http11_requests() -> None:
    [raw] = post_requests("/api/v1/osquery/distributed/read", 8412, [b'{"node_key":"k"}'])
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/osquery/distributed/read HTTP/1.1"
    assert b"Host: 127.0.0.1:8412" in lines
    assert b"Content-Length: 16" in lines
    assert body == b'{"node_key":"k"}'


def test_split_gives_each_connection_a_disjoint_share_of_every_request() -> None:
    requests = [str(i).encode() for i in range(10)]
    per_proc = split(requests, connections=4, procs=2)
    assert len(per_proc) == 2
    conns = [conn for proc in per_proc for conn in proc]
    assert len(conns) == 4
    assert sorted(r for conn in conns for r in conn) == sorted(requests)
    # More connections than requests: every connection still has something to send.
    assert all(split([b"x"], connections=3, procs=1)[0])


async def _serve(status: bytes, body: bytes) -> tuple[asyncio.Server, int]:
    response = b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                # Answer in two writes so the client must join fragments.
                writer.write(response[:7])
                await writer.drain()
                writer.write(response[7:])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _phase(status: bytes, body: bytes, expect: bytes) -> tuple[int, int, int]:
    server, port = await _serve(status, body)
    async with server:
        requests = post_requests("/x", port, [b"{}", b'{"a":1}'])
        result = await run_phase(port, [requests, requests], expect, 0.05, 0.3, os.getpid())
    assert result.window > 0
    assert len(result.latencies) == result.completed
    return result.completed, result.errors, result.unexpected


async def test_run_phase_counts_answers_and_checks_them() -> None:
    completed, errors, unexpected = await _phase(b"200 OK", b'{"queries":{}}', b'"queries":{}')
    assert completed > 0
    assert (errors, unexpected) == (0, 0)


async def test_run_phase_reports_unexpected_bodies_and_error_statuses() -> None:
    completed, errors, unexpected = await _phase(b"200 OK", b'{"queries":{"q":"x"}}', b"{}}")
    assert completed > 0 and unexpected == completed and errors == 0
    completed, errors, unexpected = await _phase(b"500 Oops", b"{}", b"{}")
    assert completed > 0 and errors == completed


def test_cpu_seconds_of_this_process() -> None:
    seconds = cpu_seconds(os.getpid())
    assert seconds is not None and seconds > 0
    assert cpu_seconds(2**22 + 12345) is None
