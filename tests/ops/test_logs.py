"""Structured logs: JSON lines with request id and host, the redactor, and an end-to-end scan
that real requests (enroll, login, logs, distributed, token in a query string, a secret in a
path) leave none of their distinctive secrets in the log output, on both backends."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fleetwatch.ops.logs import (
    MASK,
    REQUEST,
    JsonFormatter,
    Redactor,
    RequestContext,
    TextFormatter,
    bind_host,
    configure_logging,
)
from tests.agent import Agent
from tests.conftest import login
from tests.server import RunningServer

SECRET_KEYS = [
    "node_key",
    "enroll_secret",
    "password",
    "token",
    "secret",
    "Authorization",
    "access_token",
    "api_key",
    "admin_password",
    "nodeKey",
]
secret_values = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"'\\,;&}])"),
    min_size=6,
    max_size=60,
)


@given(key=st.sampled_from(SECRET_KEYS), value=secret_values, form=st.integers(0, 4))
def test_secret_fields_are_masked_in_any_form(key: str, value: str, form: int) -> None:
    assume(value not in key and value not in MASK and "=" not in value and ":" not in value)
    text = [
        f"{key}={value}",
        f'{{"{key}": "{value}", "other": 1}}',
        f"{key}: {value} and more",
        f"params {{'{key}': '{value}'}}",
        f"GET /x?a=1&{key}={value}&b=2",
    ][form]
    assert value not in Redactor().redact(text)


def test_redactor_shapes_and_known_secrets() -> None:
    redactor = Redactor()
    redactor.add("correct-horse-battery")
    redactor.add("ab")  # too short to be a secret: ignored, not masking every "ab"
    redactor.add_url("postgresql://fleet:pg-Pass-77@db:5432/fleet")
    node_key = "Xf3kP0aZ_-" * 5
    line = (
        "Authorization: Bearer tok.en-123 / NodeKey abcdef / "
        "postgresql://u:pw-in-url@h/db / key " + node_key + " / "
        "said correct-horse-battery / pg-Pass-77 / about ab"
    )
    out = redactor.redact(line)
    for secret in ("tok.en-123", "abcdef", "pw-in-url", node_key, "correct-horse", "pg-Pass-77"):
        assert secret not in out
    assert "about ab" in out  # ordinary words survive
    assert "/fleet/logs/1/0123456789abcdef0123456789abcdef" == redactor.redact(
        "/fleet/logs/1/0123456789abcdef0123456789abcdef"
    )  # 32-hex document ids are not tokens


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("fleetwatch.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_request_and_host() -> None:
    token = REQUEST.set(RequestContext("req-1"))
    try:
        bind_host(42, "web-01")
        line = json.loads(JsonFormatter().format(_record("hello %s", "world", rows=3)))
    finally:
        REQUEST.reset(token)
    assert line["msg"] == "hello world" and line["level"] == "warning"
    assert line["logger"] == "fleetwatch.test" and line["rows"] == 3
    assert line["request_id"] == "req-1" and line["host_id"] == 42
    assert line["host_identifier"] == "web-01" and line["ts"].endswith("+00:00")
    outside = json.loads(JsonFormatter().format(_record("no request")))
    assert "request_id" not in outside


def test_exceptions_and_text_format_are_redacted() -> None:
    try:
        raise ValueError("bad password=hunter2-secret")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError" in line["exc"] and "hunter2-secret" not in line["exc"]
    text = TextFormatter().format(_record("token=abc123 %s", "x", client="1.2.3.4"))
    assert "abc123" not in text and "client=1.2.3.4" in text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("fleetwatch", "uvicorn", "uvicorn.error")}
    access_disabled = logging.getLogger("uvicorn.access").disabled
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)
        logging.getLogger("uvicorn.access").disabled = access_disabled


def test_configure_logging_levels_and_format(restore_logging: None) -> None:
    buf = io.StringIO()
    configure_logging("warning", "json", stream=buf)
    logging.getLogger("fleetwatch.x").info("hidden")
    logging.getLogger("fleetwatch.x").warning("shown enroll_secret=abc-123-xyz")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["shown enroll_secret=***"]
    buf = io.StringIO()
    configure_logging("debug", "text", stream=buf)
    logging.getLogger("fleetwatch.x").debug("plain")
    assert "debug" in buf.getvalue() and "plain" in buf.getvalue()


# --- end to end ----------------------------------------------------------------------

ENROLL_SECRET = "enroll-Zx9-secret-value"
WRONG_ENROLL = "wrong-Zx9-enroll-secret"
PASSWORD = "user-Zx9-password"
WRONG_PASSWORD = "bad-Zx9-password"


def test_no_secret_reaches_the_logs(live_server: RunningServer, restore_logging: None) -> None:
    buf = io.StringIO()
    configure_logging("debug", "json", stream=buf)
    admin = login(live_server)
    auth = {"Authorization": f"Bearer {admin}"}
    url = live_server.url
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post(
            "/api/v1/fleet/secrets", json={"secret": ENROLL_SECRET}, headers=auth
        ).is_success
        created = client.post(
            "/api/v1/fleet/users",
            json={"email": "u@example.com", "password": PASSWORD, "global_role": "observer"},
            headers=auth,
        )
        assert created.is_success, created.text
        user_token = login(live_server, "u@example.com", PASSWORD)
        assert (
            client.post(
                "/api/v1/fleet/login", json={"email": "u@example.com", "password": WRONG_PASSWORD}
            ).status_code
            == 401
        )
        wrong = Agent(client, WRONG_ENROLL, "bad-host", "uuid-bad")
        assert wrong.enroll()["node_invalid"] is True
        agent = Agent(client, ENROLL_SECRET, "web-logs", "uuid-logs-1")
        node_key = agent.enroll()["node_key"]
        assert agent.post("config", {}).status_code == 200
        line = {"name": "q", "columns": {"password": "column-Zx9-value"}, "action": "added"}
        assert agent.post("log", {"log_type": "result", "data": [line]}).json() == {}
        header_log = client.post(
            "/api/v1/osquery/log",
            json={"log_type": "status", "data": [{"message": "status line"}]},
            headers={"Authorization": f"NodeKey {node_key}"},
        )
        assert header_log.json() == {}
        names = list(agent.post("distributed/read", {}).json()["queries"])
        assert agent.post("distributed/write", {"queries": {n: [] for n in names}}).is_success
        bad_body = client.post(
            "/api/v1/osquery/enroll",
            content=f'{{"enroll_secret": "{ENROLL_SECRET}", '.encode(),
        )
        assert bad_body.status_code == 400
        # A token in a query string, a secret in a path, a token in a failing header.
        assert client.get(f"/api/v1/fleet/hosts?token={user_token}", headers=auth).is_success
        assert client.delete(f"/api/v1/fleet/secrets/{ENROLL_SECRET}", headers=auth).is_success
        assert client.get("/api/v1/fleet/me", headers={"Authorization": "Bearer " + node_key})
        reply = client.get("/api/v1/fleet/me", headers=auth)
        request_id = reply.headers["x-request-id"]

    # The access line is written once the response is sent: wait for the last one.
    deadline = time.monotonic() + 10
    while request_id not in buf.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    output = buf.getvalue()
    lines = [json.loads(x) for x in output.splitlines()]
    print(output)  # shown on failure
    for secret in (
        ENROLL_SECRET,
        WRONG_ENROLL,
        PASSWORD,
        WRONG_PASSWORD,
        node_key,
        admin,
        user_token,
        "test-enroll-secret",
        "admin-password-1",
        "column-Zx9-value",
    ):
        assert secret not in output, f"{secret!r} leaked into the log"
    # The lines are useful as well as clean: requests, their ids and agents' hosts.
    access = [x for x in lines if x["logger"] == "fleetwatch.access"]
    assert any(x.get("request_id") == request_id for x in access)
    host_id = live_server.services.hosts.by_node_key(node_key)
    assert host_id is not None
    agent_lines = [x for x in access if x.get("host_id") == host_id.id]
    assert {x["path"] for x in agent_lines} >= {"/api/v1/osquery/log", "/api/v1/osquery/config"}
    assert all(x["host_identifier"] == "uuid-logs-1" for x in agent_lines)
    assert any(x["path"] == "/api/v1/fleet/secrets/***" for x in access)
    assert any(x["logger"] == "fleetwatch.osquery.routes" and "enrolled" in x["msg"] for x in lines)


# --- control characters ------------------------------------------------------------------

FORGED = "2026-01-01T00:00:00.000+00:00 warning fleetwatch.access FORGED"
#: Line breaks of every kind a reader may split on, and a terminal escape.
BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\x1b[2J"]


def test_text_lines_escape_control_characters() -> None:
    for brk in BREAKS:
        token = REQUEST.set(RequestContext("req-1"))
        try:
            bind_host(7, f"h{brk}{FORGED}")
            text = TextFormatter().format(
                _record("host %s enrolled", f"h{brk}{FORGED}", path=f"/x{brk}{FORGED}")
            )
        finally:
            REQUEST.reset(token)
        assert len(text.splitlines()) == 1, repr(text)
        assert "\x1b" not in text and "FORGED" in text
    text = TextFormatter().format(_record("a\nb\tc\x00d\u2028e"))
    assert text.endswith("a\\nb\\tc\\x00d\\u2028e")


def test_a_traceback_cannot_forge_a_text_line() -> None:
    try:
        raise ValueError(f"bad\n{FORGED}\u2028{FORGED}")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    lines = TextFormatter().format(record).splitlines()
    assert len(lines) > 2 and lines[0].endswith("failed")
    # every traceback line is indented: none starts like a record
    assert all(line.startswith("    ") for line in lines[1:])


def test_json_lines_stay_one_line() -> None:
    for brk in BREAKS:
        token = REQUEST.set(RequestContext("req-1"))
        try:
            bind_host(7, f"h{brk}{FORGED}")
            text = JsonFormatter().format(_record("host %s", f"h{brk}{FORGED}", path=f"/{brk}"))
        finally:
            REQUEST.reset(token)
        assert len(text.splitlines()) == 1, repr(text)
        line = json.loads(text)
        assert line["host_identifier"] == f"h{brk}{FORGED}" and line["path"] == f"/{brk}"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_agent_and_user_values_cannot_forge_log_lines(
    live_server: RunningServer, restore_logging: None, fmt: str
) -> None:
    buf = io.StringIO()
    configure_logging("debug", fmt, stream=buf)
    identifier = f"evil\n{FORGED}\u2028{FORGED}\r{FORGED}"
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        agent = Agent(client, "test-enroll-secret", f"name\n{FORGED}", identifier)
        assert agent.enroll().get("node_key")
        assert agent.post("config", {}).status_code == 200
        assert client.get("/api/v1/fleet/hosts/%0A" + FORGED.replace(" ", "%20")).status_code
        assert client.post(
            "/api/v1/fleet/login", json={"email": f"x@example.com\n{FORGED}", "password": "p"}
        ).status_code
        request_id = client.get("/healthz").headers["x-request-id"]
    deadline = time.monotonic() + 10
    while request_id not in buf.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = buf.getvalue().splitlines()
    print("\n".join(lines))  # shown on failure
    assert any("enrolled" in line and "FORGED" in line for line in lines)
    assert any("/api/v1/fleet/hosts/" in line and "FORGED" in line for line in lines)
    for line in lines:
        assert not line.startswith(FORGED[:10]), line  # no forged record
        if fmt == "json":
            assert isinstance(json.loads(line), dict)
        else:  # a record, or an indented traceback line
            assert re.match(r"\d{4}-\d\d-\d\dT", line) or line.startswith("    "), line
