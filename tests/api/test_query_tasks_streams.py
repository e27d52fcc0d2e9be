"""A task's WebSocket and SSE streams over real sockets, on both backends.

Resume with `since` / `Last-Event-ID`, resync on overrun, a subscriber that never reads,
writes racing the subscription, and bad stream requests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from fleetwatch.config import Settings
from fleetwatch.index import Action, Write, now_micros
from tests.agent import Agent
from tests.conftest import login
from tests.query.task_client import (
    TASKS,
    TaskClient,
    kind_query,
    sse_events,
    task_body,
    user_client,
)
from tests.server import RunningServer, running_server
from tests.services import PostgresServer

QUEUE_LIMIT = 50


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    return server_settings.model_copy(
        update={"sse_keepalive": 0.2, "subscriber_queue_limit": QUEUE_LIMIT}
    )


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


def write_many(server: RunningServer, kind: str, prefix: str, n: int, pad: int = 0) -> None:
    """n POSTs in one index batch, straight on the server's loop (as an ingest would)."""
    writes = [
        Write(Action.POST, f"/docs/{kind}/{prefix}{i}", f"docs:{kind}", {"i": i, "pad": "x" * pad})
        for i in range(n)
    ]
    server.call(server.services.index.apply(writes))


def test_sse_initial_changes_and_last_event_id_resume(tasks: TaskClient) -> None:
    tasks.doc("POST", "/docs/s", {"documentSelfLink": "a"})
    link = tasks.create(task_body(kind_query("docs:s"), "CONTINUOUS", "EXPAND_CONTENT"))[
        "documentSelfLink"
    ]
    seen: list[tuple[str | None, dict[str, Any]]] = []
    comments = 0
    with tasks.http.stream("GET", f"{link}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        for event_id, data in events:
            if data is None:
                comments += 1
                if comments == 3:  # keep-alives flow while idle; now make changes
                    tasks.doc("POST", "/docs/s", {"documentSelfLink": "b"})
                    tasks.doc("PATCH", "/docs/s/a", {"v": 1})
                continue
            seen.append((event_id, data))
            if len(seen) == 3:
                break
    initial, first, second = (d for _, d in seen)
    assert initial["type"] == "initial" and initial["results"]["documentLinks"] == ["/docs/s/a"]
    assert seen[0][0] == str(initial["seq"])
    assert first["event"] == "added" and second["documentUpdateAction"] == "PATCH"
    assert seen[1][0] == str(first["seq"]) and seen[2][0] == str(second["seq"])

    # changes while disconnected, then resume after the first change
    tasks.doc("DELETE", "/docs/s/b")
    headers = {"last-event-id": str(first["seq"])}
    with tasks.http.stream("GET", f"{link}/events", headers=headers) as response:
        got: list[dict[str, Any]] = []
        for _, data in sse_events(response):
            if data is not None:
                got.append(data)
            if len(got) == 2:
                break
    assert [g["seq"] for g in got] == [second["seq"], got[1]["seq"]]
    assert got[1]["documentUpdateAction"] == "DELETE" and got[1]["seq"] > second["seq"]
    # ?since= does the same and skips the initial results
    with tasks.http.stream("GET", f"{link}/events", params={"since": second["seq"]}) as response:
        for _, data in sse_events(response):
            if data is not None:
                assert data["type"] == "change" and data["seq"] == got[1]["seq"]
                break


def test_websocket_since_resumes_exactly_after(tasks: TaskClient) -> None:
    link = tasks.create(task_body(kind_query("docs:w"), "CONTINUOUS"))["documentSelfLink"]
    with tasks.websocket(link) as ws:
        _, _, seq = ws.initial()
        for i in range(5):
            tasks.doc("POST", "/docs/w", {"documentSelfLink": f"d{i}"})
        notes = ws.take(5)
    for i in range(5, 8):
        tasks.doc("POST", "/docs/w", {"documentSelfLink": f"d{i}"})
    with tasks.websocket(link, since=notes[2]["seq"]) as ws:
        rest = ws.take(5)
        assert [m["results"]["documentLinks"][0] for m in rest] == [
            f"/docs/w/d{i}" for i in range(3, 8)
        ]
        assert ws.quiet()
    assert notes[0]["seq"] > seq


def test_overrun_gets_resync_and_resuming_loses_nothing(
    live_server: RunningServer, tasks: TaskClient
) -> None:
    link = tasks.create(task_body(kind_query("docs:o"), "CONTINUOUS"))["documentSelfLink"]
    total = 4 * QUEUE_LIMIT
    links: list[str] = []
    with tasks.websocket(link) as ws:
        ws.initial()
        write_many(live_server, "o", "d", total)
        while True:
            message = ws.next()
            if message["type"] == "resync":
                break
            links.append(message["results"]["documentLinks"][0])
        assert 0 < len(links) <= QUEUE_LIMIT
        resync_seq = message["seq"]
    with tasks.websocket(link, since=resync_seq) as ws:
        while len(links) < total:
            links.append(ws.next()["results"]["documentLinks"][0])
        assert ws.quiet()
    assert links == [f"/docs/o/d{i}" for i in range(total)]
    assert tasks.wait_stats("subscribers", 0)["subscribers"] == 0


def _raw_websocket(server: RunningServer, path: str, token: str) -> socket.socket:
    """A WebSocket connection that completes the handshake and then never reads."""
    sock = socket.create_connection(("127.0.0.1", server.settings.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(1)
    assert b" 101 " in reply
    return sock


def _client_gone_before_the_body(server: RunningServer, path: str, token: str) -> int:
    """Run GET `path` on the server's app, as a client that left before the response
    started: the send of the response start fails, the body never runs. The status the
    response was going to have."""
    started: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        started.append(message)
        raise OSError("connection reset by peer")

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", server.settings.port),
        "state": {},
    }

    async def run() -> None:
        with contextlib.suppress(ClientDisconnect, OSError):
            await server.app(scope, receive, send)

    server.call(run())
    status: int = started[0]["status"]
    return status


def test_an_sse_client_gone_before_the_body_leaves_no_subscription(
    live_server: RunningServer, tasks: TaskClient
) -> None:
    """The route subscribes before it returns its response; a client gone before the body
    starts (so the body's own `finally` never runs) must not leave that subscription on the
    hub, nor its stream slot taken."""
    link = tasks.create(task_body(kind_query("docs:gone"), "CONTINUOUS"))["documentSelfLink"]
    hub = live_server.services.subscriptions
    for _ in range(3):  # each time the route subscribed and was about to answer 200
        assert _client_gone_before_the_body(live_server, f"{link}/events", tasks.token) == 200
    assert hub.subscriber_count == 0
    assert live_server.services.stream_quota.open_streams(1) == 0


def test_never_reading_subscriber_harms_nobody(
    live_server: RunningServer, tasks: TaskClient
) -> None:
    link = tasks.create(task_body(kind_query("docs:n"), "CONTINUOUS", "EXPAND_CONTENT"))[
        "documentSelfLink"
    ]
    stuck = _raw_websocket(live_server, f"{link}/stream", tasks.token)
    try:
        tasks.wait_stats("subscribers", 1)
        with tasks.websocket(link) as ws:
            ws.initial()
            started = time.monotonic()
            for batch in range(16):  # ~13 MB of notifications: far beyond socket buffers
                write_many(live_server, "n", f"b{batch}-", 40, pad=20_000)
                got = ws.take(40)
                assert got[-1]["results"]["documentLinks"] == [f"/docs/n/b{batch}-39"]
            # the writes never waited for the stuck subscriber
            assert time.monotonic() - started < 60
            # it was detached once its bounded queue filled: only the reader remains
            assert tasks.wait_stats("subscribers", 1)["subscribers"] == 1
            hub = live_server.services.subscriptions
            assert hub.subscriber_count == 1
            # other tasks and plain writes are unaffected
            other = tasks.create(task_body(kind_query("docs:n"), "COUNT", direct=True))
            assert other["results"]["documentCount"] == 16 * 40
    finally:
        stuck.close()


def test_writes_racing_the_subscription_over_sockets(
    live_server: RunningServer, tasks: TaskClient
) -> None:
    link = tasks.create(task_body(kind_query("docs:race"), "CONTINUOUS"))["documentSelfLink"]
    total = 120
    errors: list[str] = []

    def writer() -> None:
        with httpx.Client(
            base_url=live_server.url, headers={"authorization": f"Bearer {tasks.token}"}
        ) as c:
            for i in range(total):
                reply = c.post("/docs/race", json={"documentSelfLink": f"r{i}"})
                if reply.status_code != 200:
                    errors.append(reply.text)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.05)
    with tasks.websocket(link) as ws:
        links, _, _ = ws.initial()
        while len(links) < total:
            message = ws.next()
            assert message["type"] == "change" and message["event"] == "added"
            links.extend(message["results"]["documentLinks"])
        thread.join()
        assert ws.quiet()
    assert not errors
    assert sorted(links) == sorted(f"/docs/race/r{i}" for i in range(total))
    assert len(set(links)) == total


def test_bad_stream_requests(live_server: RunningServer, tasks: TaskClient) -> None:
    cont = tasks.create(task_body(kind_query("docs:b"), "CONTINUOUS"))["documentSelfLink"]
    once = tasks.create(task_body(kind_query("docs:b")))["documentSelfLink"]
    assert tasks.http.get(f"{TASKS}/missing/events").status_code == 404
    one_shot = tasks.http.get(f"{once}/events")
    assert one_shot.status_code == 400 and "not a continuous task" in one_shot.json()["error"]
    for since in ("-1", "abc", "1e3"):
        reply = tasks.http.get(f"{cont}/events", params={"since": since})
        assert reply.status_code == 400 and "since" in reply.json()["error"]
    bad_header = tasks.http.get(f"{cont}/events", headers={"last-event-id": "x"})
    assert bad_header.status_code == 400 and "Last-Event-ID" in bad_header.json()["error"]
    for i in range(3):
        tasks.doc("POST", "/docs/b", {"documentSelfLink": f"{i}"})
    retention = live_server.services.retention
    live_server.call(retention.trim_once(now=now_micros() + int(retention.retention * 2e6)))
    old = tasks.http.get(f"{cont}/events", params={"since": 1})
    assert old.status_code == 410 and "older than the change log keeps" in old.json()["error"]
    with tasks.websocket(f"{TASKS}/missing") as ws:
        error = ws.next()
        assert error["type"] == "error" and "no query task" in error["error"]
    # a WebSocket without a token is refused with a message saying why
    url = live_server.url.replace("http://", "ws://") + f"{cont}/stream"
    from websockets.sync.client import connect

    with connect(url) as anonymous:
        anonymous.send('{"type": "auth", "data": {"token": "wrong"}}')
        refused = anonymous.recv(timeout=20)
        assert "error" in refused


def test_a_user_holds_at_most_max_streams_per_user_streams(server_settings: Settings) -> None:
    """Task and campaign streams, WebSocket and SSE, share one allowance per user."""
    from websockets.sync.client import connect

    settings = server_settings.model_copy(update={"max_streams_per_user": 3})
    with running_server(settings) as server:
        admin = TaskClient(server, login(server))
        with httpx.Client(base_url=server.url) as agents:
            Agent(agents, "test-enroll-secret", "host-a", "uuid-a").enroll()
        maintainer, me = user_client(admin, "maintainer@example.com", "maintainer")
        quota = server.services.stream_quota
        link = maintainer.create(task_body(kind_query("docs:q"), "CONTINUOUS"))["documentSelfLink"]
        campaign = maintainer.http.post(
            "/api/v1/fleet/queries/run", json={"query": "SELECT 1", "targets": [{"type": "all"}]}
        ).json()["campaign_id"]
        ws_base = server.url.replace("http://", "ws://")
        auth = {"Authorization": f"Bearer {maintainer.token}"}
        campaign_ws = f"{ws_base}/api/v1/fleet/results/websocket?campaign_id={campaign}"
        with (
            maintainer.websocket(link) as task_ws,
            maintainer.http.stream("GET", f"{link}/events") as task_sse,
            maintainer.http.stream("GET", f"/api/v1/fleet/campaigns/{campaign}/events") as sse,
        ):
            task_ws.initial()
            assert task_sse.status_code == 200 and sse.status_code == 200
            assert quota.open_streams(me) == 3
            for path in (f"{link}/events", f"/api/v1/fleet/campaigns/{campaign}/events"):
                refused = maintainer.http.get(path)
                assert refused.status_code == 429, (path, refused.text)
                assert "max_streams_per_user = 3" in refused.json()["error"]
            with maintainer.websocket(link) as fourth:
                error = fourth.next()
                assert error["type"] == "error" and "max_streams_per_user" in error["error"]
            with connect(campaign_ws, additional_headers=auth) as fourth_campaign:
                error = json.loads(fourth_campaign.recv(timeout=20))
                assert error["type"] == "error"
                assert "max_streams_per_user" in error["data"]["error"]
            # another user's streams are its own
            own = admin.create(task_body(kind_query("docs:q"), "CONTINUOUS"))["documentSelfLink"]
            with admin.websocket(own) as other:
                assert other.initial()[0] == []
        # every stream closed gives its slot back (the server notices each client leaving)
        deadline = time.monotonic() + 20
        while quota.open_streams(me) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert quota.open_streams(me) == 0
        with maintainer.http.stream("GET", f"{link}/events") as again:
            assert again.status_code == 200
        maintainer.close()
        admin.close()


def _drop_sse(server: RunningServer, path: str, token: str, how: str) -> None:
    """Open an SSE stream over a raw socket and drop it: right after the request, after
    the response head, or with a reset while the server is blocked on the full socket of a
    client that never reads."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
    sock.connect(("127.0.0.1", port))
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        sock.sendall(request.encode())
        if how == "at once":
            return
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # the head only: the body stays unread in the socket
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        if how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    finally:
        sock.close()


def test_dropped_sse_streams_give_their_slots_back(server_settings: Settings) -> None:
    """Open and drop many more SSE streams than the user may hold at once, every way a
    client can leave (issue 14 follow-up): the next one still opens."""
    settings = server_settings.model_copy(update={"max_streams_per_user": 3})
    with running_server(settings) as server:
        admin = TaskClient(server, login(server))
        with httpx.Client(base_url=server.url) as agents:
            Agent(agents, "test-enroll-secret", "host-a", "uuid-a").enroll()
        maintainer, me = user_client(admin, "dropper@example.com", "maintainer")
        quota = server.services.stream_quota
        # initial results far larger than the socket buffers: a client that never reads
        # leaves the server waiting on a full socket
        write_many(server, "big", "b", 60, pad=50_000)
        link = maintainer.create(task_body(kind_query("docs:big"), "CONTINUOUS", "EXPAND_CONTENT"))[
            "documentSelfLink"
        ]
        campaign = maintainer.http.post(
            "/api/v1/fleet/queries/run", json={"query": "SELECT 1", "targets": [{"type": "all"}]}
        ).json()["campaign_id"]
        paths = (f"{link}/events", f"/api/v1/fleet/campaigns/{campaign}/events")
        for round_ in range(12):  # 4 times the allowance
            deadline = time.monotonic() + 20
            while quota.open_streams(me) >= 3 and time.monotonic() < deadline:
                time.sleep(0.02)  # the server has yet to notice an earlier client leaving
            how = ("at once", "after the head", "reset")[round_ % 3]
            _drop_sse(server, paths[round_ % 2], maintainer.token, how)
        deadline = time.monotonic() + 20
        while quota.open_streams(me) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert quota.open_streams(me) == 0
        for path in paths:
            with maintainer.http.stream("GET", path) as again:
                assert again.status_code == 200
        maintainer.close()
        admin.close()


def test_a_stream_ends_when_its_token_is_revoked(tasks: TaskClient) -> None:
    """Logging out (or a new password, which revokes every token) must also end the streams
    opened with the token: otherwise a stolen session keeps reading after its owner logged
    out everywhere (redteam review of issue 14 item 17)."""
    observer, _ = user_client(tasks, "observer@example.com", "observer")
    link = observer.create(task_body(kind_query("docs:r"), "CONTINUOUS", "EXPAND_CONTENT"))[
        "documentSelfLink"
    ]
    with observer.http.stream("GET", f"{link}/events") as response:
        assert response.status_code == 200
        events = sse_events(response)
        assert next(data for _, data in events if data is not None)["type"] == "initial"
        assert observer.http.post("/api/v1/fleet/logout").status_code == 200
        assert observer.http.get("/api/v1/fleet/me").status_code == 401
        tasks.doc("POST", "/docs/r", {"documentSelfLink": "after-logout", "secret": "s"})
        keepalives = 0
        ended_with: dict[str, Any] | None = None
        for _, data in events:
            if data is None:
                keepalives += 1
                assert keepalives < 50, "the stream is still open after its token was revoked"
                continue
            # the only event allowed: one error saying why, after which the stream closes
            assert ended_with is None, f"delivered after the token was revoked: {data}"
            assert data["type"] == "error", f"delivered after the token was revoked: {data}"
            ended_with = data
        assert ended_with is not None, "the stream closed without saying why"
        assert "revoked" in ended_with["error"] and "log in again" in ended_with["error"]
    observer.close()


def test_a_websocket_ends_when_its_token_is_deleted_and_sse_on_a_new_password(
    tasks: TaskClient,
) -> None:
    """DELETE /me/tokens/{id} ends the WebSocket opened with that token (an error message,
    close code 4401); a new password ends the SSE stream of the login session too."""
    from websockets.exceptions import ConnectionClosed

    observer, user_id = user_client(tasks, "observer@example.com", "observer")
    made = observer.http.post(
        "/api/v1/fleet/me/tokens", json={"name": "script", "password": "user-password-1"}
    ).json()
    script = TaskClient(tasks.server, made["token"])
    link = observer.create(task_body(kind_query("docs:t"), "CONTINUOUS"))["documentSelfLink"]
    with (
        script.websocket(link) as ws,
        observer.http.stream("GET", f"{link}/events") as response,
    ):
        ws.initial()
        events = sse_events(response)
        assert next(data for _, data in events if data is not None)["type"] == "initial"
        gone = observer.http.delete(f"/api/v1/fleet/me/tokens/{made['id']}")
        assert gone.status_code == 200
        error = ws.next()
        assert error["type"] == "error" and "revoked" in error["error"], error
        with pytest.raises(ConnectionClosed) as closed:
            ws.next()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        # the session's SSE stream is still open, and delivers
        tasks.doc("POST", "/docs/t", {"documentSelfLink": "seen"})
        assert next(data for _, data in events if data is not None)["type"] == "change"
        changed = observer.http.patch(
            f"/api/v1/fleet/users/{user_id}",
            json={"password": "another-password-2", "old_password": "user-password-1"},
        )
        assert changed.status_code == 200, changed.text
        tasks.doc("POST", "/docs/t", {"documentSelfLink": "after"})
        rest = [data for _, data in events if data is not None]
        assert [d["type"] for d in rest] == ["error"], rest
        assert "password changed" in rest[0]["error"]
    script.close()
    observer.close()


@pytest.mark.parametrize("bus", ["redis", "periodic re-check"])
def test_a_stream_ends_when_its_token_is_revoked_on_another_node(
    bus: str, pg_server: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two nodes on one PostgreSQL: a logout on one ends the stream opened with that token
    on the other, told over Redis, or (nodes without Redis, or a change made by another
    process) by the periodic re-check."""
    url = pg_server.create_database(f"revoke_{bus.split()[0]}_{os.getpid()}")
    # with Redis, checked rarely: only the bus can end the stream within the test's bound
    interval = 3600.0 if bus == "redis" else 0.2
    redis_url = request.getfixturevalue("redis_url") if bus == "redis" else None

    def node(name: str) -> Settings:
        return Settings(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / name,
            database_url=url,
            redis_url=redis_url,
            admin_email="admin@example.com",
            admin_password="admin-password-1",
            sse_keepalive=0.2,
            stream_token_check_interval=interval,
        )

    with running_server(node("one")) as first, running_server(node("two")) as second:
        session = login(first)
        reader = TaskClient(first, session)
        link = reader.create(task_body(kind_query("docs:x"), "CONTINUOUS"))["documentSelfLink"]
        with reader.http.stream("GET", f"{link}/events") as response:
            events = sse_events(response)
            assert next(data for _, data in events if data is not None)["type"] == "initial"
            with httpx.Client(base_url=second.url) as other:
                out = other.post(
                    "/api/v1/fleet/logout", headers={"authorization": f"Bearer {session}"}
                )
            assert out.status_code == 200
            keepalives = 0
            rest: list[dict[str, Any]] = []
            for _, data in events:
                if data is None:
                    keepalives += 1
                    assert keepalives < 50, "the stream outlived its token"
                else:
                    rest.append(data)
            assert [d["type"] for d in rest] == ["error"], rest
            assert "revoked" in rest[0]["error"]
        reader.close()
