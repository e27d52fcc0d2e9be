"""The lean path for agents' POSTs, over a real socket on SQLite and PostgreSQL.

Agents' POSTs never enter FastAPI's middleware stack or router, and every answer (good,
malformed, oversized, gzip, unknown key, a handler's error) is byte for byte what the
framework path gives for the same request, with the request id, the access log and the
request metrics as before.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.exc import DBAPIError

from fleetwatch.config import Settings
from fleetwatch.osquery.lean_app import FleetwatchApp
from tests.agent import Agent
from tests.ops.scrape import scrape, value
from tests.server import RunningServer, running_server

SECRET = "test-enroll-secret"
LIMIT = 4096
PREFIXES = ("/api/v1/osquery", "/api/osquery")


@pytest.fixture
def small_limit_server(server_settings: Settings) -> Iterator[RunningServer]:
    with running_server(server_settings.model_copy(update={"max_body_bytes": LIMIT})) as s:
        yield s


def _app(server: RunningServer) -> FleetwatchApp:
    app = server.app
    assert isinstance(app, FleetwatchApp)
    return app


class StackCalls:
    """Counts the requests that enter the app's FastAPI middleware stack, by path."""

    def __init__(self, server: RunningServer) -> None:
        self.paths: list[str] = []
        app = _app(server)
        stack = app.middleware_stack
        assert stack is not None  # built by the first request

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            self.paths.append(scope["path"])
            await stack(scope, receive, send)

        app.middleware_stack = counting


def test_agent_posts_do_not_enter_the_framework(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=16) as client:
        assert client.get("/healthz").status_code == 200  # builds the middleware stack
        calls = StackCalls(live_server)
        for prefix in PREFIXES:
            agent = Agent(client, SECRET, "web-01", f"uuid-lean{prefix.count('/')}")
            agent.enroll()
            key = {"node_key": agent.node_key}
            assert "options" in client.post(f"{prefix}/config", json=key).json()
            queries = client.post(f"{prefix}/distributed/read", json=key).json()["queries"]
            assert queries
            written = {"queries": {n: [] for n in queries}, "statuses": {n: 0 for n in queries}}
            reply = client.post(f"{prefix}/distributed/write", json={**key, **written})
            assert reply.json() == {}
            log = {**key, "log_type": "status", "data": []}
            assert client.post(f"{prefix}/log", json=log).json() == {}
            assert client.post(f"{prefix}/config", content=b"{").status_code == 400
        assert calls.paths == []
        # Other methods and paths still go through FastAPI.
        wrong_method = client.get("/api/v1/osquery/config")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()
        assert client.get("/healthz").status_code == 200
        assert calls.paths == ["/api/v1/osquery/config", "/healthz"]


def _gzip(body: dict[str, Any]) -> bytes:
    return gzip.compress(orjson.dumps(body))


def _cases(node_key: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(endpoint, headers, body) of good and bad agent requests."""
    key = {"node_key": node_key}
    bomb = gzip.compress(b'{"node_key": "' + b"a" * (LIMIT * 4) + b'"}')
    json_type = {"content-type": "application/json"}
    gz = {**json_type, "content-encoding": "gzip"}
    return [
        ("config", json_type, orjson.dumps(key)),
        ("config", gz, _gzip(key)),
        ("config", {"authorization": f"NodeKey {node_key}"}, b"{}"),
        ("config", json_type, orjson.dumps({"node_key": "no-such-key"})),
        ("config", json_type, b"not json"),
        ("config", json_type, b""),
        ("config", json_type, b"[1, 2]"),
        ("config", json_type, b"x" * (LIMIT + 1)),
        ("config", gz, bomb),
        ("config", gz, _gzip(key)[:-12]),
        ("config", {"content-encoding": "br"}, b"{}"),
        ("distributed/read", json_type, orjson.dumps(key)),
        ("distributed/write", json_type, orjson.dumps({**key, "queries": {"q": 5}})),
        ("distributed/write", json_type, orjson.dumps({**key, "statuses": {"q": True}})),
        ("log", json_type, orjson.dumps({**key, "log_type": 5})),
        ("log", json_type, orjson.dumps({**key, "log_type": "status", "data": {}})),
        ("log", gz, _gzip({**key, "log_type": "status", "data": []})),
        ("enroll", json_type, orjson.dumps({"enroll_secret": "wrong", "host_identifier": "h"})),
        ("enroll", json_type, orjson.dumps({"enroll_secret": SECRET, "host_identifier": ""})),
    ]


def _answer(client: httpx.Client, path: str, headers: dict[str, str], body: bytes) -> Any:
    reply = client.post(path, headers=headers, content=body)
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.content)
    assert reply.headers["x-request-id"]
    retry_after = reply.headers.get("retry-after")
    return reply.status_code, orjson.loads(reply.content), retry_after


def test_the_lean_path_answers_as_the_framework_does(small_limit_server: RunningServer) -> None:
    server = small_limit_server
    app = _app(server)
    with httpx.Client(base_url=server.url, timeout=16) as client:
        agent = Agent(client, SECRET, "web-01", "uuid-lean-same")
        agent.enroll()
        cases = _cases(agent.node_key)
        lean = [_answer(client, f"/api/v1/osquery/{e}", h, b) for e, h, b in cases]
        assert app.lean is not None
        saved, app.lean = app.lean, None
        try:
            routed = [_answer(client, f"/api/v1/osquery/{e}", h, b) for e, h, b in cases]
        finally:
            app.lean = saved
    for case, got, expected in zip(cases, lean, routed, strict=True):
        assert got == expected, case[:2]
    statuses = [status for status, _, _ in lean]
    assert statuses == [200, 200, 200, 401, 400, 400, 400, 413, 413, 400, 400, 200] + [
        400,
        400,
        400,
        400,
        200,
        401,
        400,
    ]


def test_request_ids_and_metrics_on_the_lean_path(
    live_server: RunningServer, admin_token: str
) -> None:
    with httpx.Client(base_url=live_server.url, timeout=16) as client:
        agent = Agent(client, SECRET, "web-01", "uuid-lean-ids")
        agent.enroll()
        key = {"node_key": agent.node_key}
        mine = client.post("/api/v1/osquery/config", json=key, headers={"x-request-id": "abc-1"})
        assert mine.headers["x-request-id"] == "abc-1"
        made = {client.post("/api/osquery/config", json=key).headers["x-request-id"] for _ in "ab"}
        assert len(made) == 2
        assert client.post("/api/v1/osquery/config", json={"node_key": "nope"}).status_code == 401
    text = scrape(live_server, admin_token)
    assert value(text, "fleetwatch_agent_requests_total", endpoint="config", outcome="ok") == 3
    assert (
        value(text, "fleetwatch_agent_requests_total", endpoint="config", outcome="node_invalid")
        == 1
    )
    for route, count in (("/api/v1/osquery/config", 2), ("/api/osquery/config", 2)):
        assert (
            value(
                text,
                "fleetwatch_http_request_duration_seconds_count",
                route=route,
                method="POST",
            )
            == count
        )


@pytest.mark.parametrize(
    "error, status",
    [
        (RuntimeError("boom"), 500),  # the catch-all handler's JSON 500
        (DBAPIError("SELECT 1", {}, Exception("boom")), 500),  # a handler that re-raises
    ],
)
def test_a_handler_error_is_answered_as_the_framework_does(
    live_server: RunningServer, admin_token: str, error: Exception, status: int
) -> None:
    app = _app(live_server)
    with httpx.Client(base_url=live_server.url, timeout=16) as client:
        agent = Agent(client, SECRET, "web-01", "uuid-lean-error")
        agent.enroll()
        services = live_server.services

        async def failing(*_: Any, **__: Any) -> int:
            raise error

        original = services.distributed.write
        services.distributed.write = failing  # type: ignore[method-assign]
        body = {"node_key": agent.node_key, "queries": {}}
        # A new connection each: the server drops one after an error it re-raised.
        url = f"{live_server.url}/api/v1/osquery/distributed/write"
        try:
            lean = httpx.post(url, json=body, timeout=16)
            saved, app.lean = app.lean, None
            try:
                routed = httpx.post(url, json=body, timeout=16)
            finally:
                app.lean = saved
        finally:
            services.distributed.write = original  # type: ignore[method-assign]
    assert lean.status_code == routed.status_code == status
    assert lean.json() == routed.json()
    assert "internal error" in lean.json()["error"]
    text = scrape(live_server, admin_token)
    errors = value(
        text, "fleetwatch_agent_requests_total", endpoint="distributed_write", outcome="error"
    )
    assert errors == 2
