"""Fuzzing the agent API over a real server, on both backends.

Hypothesis builds osquery-shaped payloads with wrong types, missing keys, huge strings,
deep nesting, lone surrogates, invalid UTF-8 and every gzip edge case (truncated, garbage,
concatenated, empty, declared but absent, unknown encodings), for every agent endpoint,
sometimes with a valid node key so the payload reaches the parsers behind authentication.

Properties: the reply is always a JSON object osquery can parse (never HTML, never empty);
never a 5xx; an error carries `error`; and no other host's stored data changes: a
"bystander" host's inventory and logs are identical before and after, and the fuzzed host's
data still reads back through the user API.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agent import Agent, answer_details
from tests.server import RunningServer

SECRET = "test-enroll-secret"
ENDPOINTS = ["enroll", "config", "log", "distributed/read", "distributed/write"]
EXAMPLES = 150

# --- JSON values ---------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**80),  # past every database integer
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.text(min_size=10_000, max_size=10_000, alphabet="abcé\u2603"),  # huge, non-ASCII
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\ufffe", "\U0001f600"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
query_names = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "fleet_detail_query_os_version",
            "fleet_detail_query_system_info",
            "fleet_distributed_query_1",
            "fleet_distributed_query_99999999999999999999",
            "fleet_label_query_x",
            "fleet_distributed_query_",
        ]
    ),
)
rows = st.lists(st.dictionaries(st.text(max_size=10), json_values, max_size=4), max_size=4)


def optional(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`{key: value}` or nothing: keys go missing as often as not."""
    return st.one_of(st.just({}), value.map(lambda v: {key: v}))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


def bodies(endpoint: str) -> st.SearchStrategy[Any]:
    """Payloads shaped like what osquery sends to `endpoint`, with every field mistreated."""
    if endpoint == "enroll":
        return merged(
            optional("enroll_secret", st.one_of(st.just(SECRET), json_values)),
            optional(
                "host_identifier",
                st.one_of(st.text(max_size=300).map(lambda s: "fuzz-" + s), json_values),
            ),
            optional("platform_type", json_values),
            optional(
                "host_details",
                st.one_of(json_values, st.dictionaries(st.text(max_size=15), rows | json_values)),
            ),
        )
    if endpoint == "log":
        line = st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"name": json_values, "columns": json_values, "action": json_values},
                optional={
                    "diffResults": json_values,
                    "snapshot": json_values,
                    "epoch": json_values,
                    "counter": json_values,
                },
            ),
        )
        return merged(
            optional("log_type", st.one_of(st.sampled_from(["result", "status"]), json_values)),
            optional("data", st.one_of(st.lists(line, max_size=5), json_values)),
        )
    if endpoint == "distributed/write":
        by_name = st.dictionaries(query_names, st.one_of(rows, json_values), max_size=4)
        return merged(
            optional("queries", st.one_of(by_name, json_values)),
            optional("statuses", st.one_of(st.dictionaries(query_names, json_values), json_values)),
            optional("messages", st.one_of(st.dictionaries(query_names, json_values), json_values)),
            optional("stats", st.one_of(st.dictionaries(query_names, json_values), json_values)),
        )
    return st.dictionaries(st.text(max_size=10), json_values, max_size=3)  # config, read


# --- bytes on the wire -----------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _with_invalid_utf8(raw: bytes) -> bytes:
    return raw.replace(b'"', b'"\xff\xfe', 1) if b'"' in raw else b'{"x": "\xc3\x28"}'


ENCODINGS = [
    "plain",
    "gzip",
    "deflate",
    "truncated-gzip",
    "garbage-gzip",
    "concatenated-gzip",
    "empty-gzip",
    "unknown-encoding",
    "invalid-utf8",
    "lone-surrogate",
    "deep-nesting",
    "not-an-object",
    "trailing-garbage",
]


def wire(payload: dict[str, Any], encoding: str) -> tuple[bytes, dict[str, str]]:
    """The request body and headers for a payload sent with one encoding twist."""
    # The standard library writes integers past 64 bits (orjson refuses them).
    # Lone surrogates go out as their (invalid) UTF-8 bytes.
    raw = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    headers = {"Content-Type": "application/json", "User-Agent": "osquery/5.23.1"}
    if encoding == "gzip":
        return gzip.compress(raw), {**headers, "Content-Encoding": "gzip"}
    if encoding == "deflate":
        return zlib.compress(raw), {**headers, "Content-Encoding": "deflate"}
    if encoding == "truncated-gzip":
        return gzip.compress(raw)[:-9], {**headers, "Content-Encoding": "gzip"}
    if encoding == "garbage-gzip":
        return raw, {**headers, "Content-Encoding": "gzip"}
    if encoding == "concatenated-gzip":
        return gzip.compress(raw) + gzip.compress(raw), {**headers, "Content-Encoding": "gzip"}
    if encoding == "empty-gzip":
        return gzip.compress(b""), {**headers, "Content-Encoding": "gzip"}
    if encoding == "unknown-encoding":
        return raw, {**headers, "Content-Encoding": "br"}
    if encoding == "invalid-utf8":
        return _with_invalid_utf8(raw), headers
    if encoding == "lone-surrogate":
        return raw[:-1] + b', "s": "\\ud800", "\\udfff": 1}' if raw != b"{}" else (
            b'{"s": "\\ud800"}'
        ), headers
    if encoding == "deep-nesting":
        return b'{"node_key": ' + _nested(5000) + b"}", headers
    if encoding == "not-an-object":
        return json.dumps([payload]).encode(), headers
    return raw + b" }{", headers  # trailing-garbage


# --- the test --------------------------------------------------------------------------


@pytest.fixture
def client(live_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as c:
        yield c


def _snapshot(client: httpx.Client, auth: dict[str, str], host_id: int) -> tuple[Any, Any]:
    host = client.get(f"/api/v1/fleet/hosts/{host_id}", headers=auth)
    logs = client.get(f"/api/v1/fleet/hosts/{host_id}/logs?per_page=1000", headers=auth)
    assert host.status_code == 200 and logs.status_code == 200, (host.text, logs.text)
    body = host.json()["host"]
    # What a check-in legitimately moves: the host's last-seen time and status.
    for moving in ("seen_time", "status"):
        body.pop(moving, None)
    return body, logs.json()


#: What the bystander answers for os_version (the fuzzed host answers nothing).
OS_VERSION = {
    "name": "Ubuntu",
    "version": "22.04",
    "major": "22",
    "minor": "4",
    "patch": "0",
    "platform": "ubuntu",
    "build": "",
    "arch": "x86_64",
}


def test_agent_endpoints_survive_fuzzing(
    client: httpx.Client, live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    bystander = Agent(client, SECRET, "bystander", "uuid-bystander")
    bystander.enroll()
    answer_details(bystander, {"fleet_detail_query_os_version": [OS_VERSION]})
    logged = bystander.post(
        "log",
        {"log_type": "result", "data": [{"name": "q", "columns": {"a": "1"}, "action": "added"}]},
    )
    assert logged.json() == {}
    fuzzed = Agent(client, SECRET, "fuzzed", "uuid-fuzzed")
    fuzzed.enroll()
    answer_details(fuzzed)
    ids = {
        h["hostname"]: h["id"]
        for h in client.get("/api/v1/fleet/hosts", headers=auth).json()["hosts"]
    }
    before = _snapshot(client, auth, ids["bystander"])
    seen_status: set[int] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        endpoint = data.draw(st.sampled_from(ENDPOINTS), label="endpoint")
        payload = data.draw(bodies(endpoint), label="payload")
        key = data.draw(st.sampled_from(["valid", "header", "none", "junk"]), label="node key")
        headers_extra: dict[str, str] = {}
        if not isinstance(payload, dict):
            payload = {"value": payload}
        if key == "valid" and endpoint != "enroll":
            payload = {**payload, "node_key": fuzzed.node_key}
        elif key == "header" and endpoint != "enroll":
            headers_extra["Authorization"] = f"NodeKey {fuzzed.node_key}"
        elif key == "junk":
            payload = {**payload, "node_key": data.draw(json_values, label="junk key")}
        encoding = data.draw(st.sampled_from(ENCODINGS), label="encoding")
        content, headers = wire(payload, encoding)
        reply = client.post(
            f"/api/v1/osquery/{endpoint}", content=content, headers={**headers, **headers_extra}
        )
        seen_status.add(reply.status_code)
        assert reply.status_code < 500, reply.text
        assert reply.headers["content-type"].startswith("application/json"), reply.headers
        body = orjson.loads(reply.content)  # osquery's parser must accept it
        assert isinstance(body, dict), body
        if reply.status_code >= 400:
            assert isinstance(body.get("error"), str) and body["error"], body
        if "node_invalid" in body:
            assert isinstance(body["node_invalid"], bool)

    fuzz()
    assert {200, 400, 401} <= seen_status  # the fuzzer reached past auth and was refused too
    # The bystander's data is exactly as it was; the fuzzed host's data still reads back.
    assert _snapshot(client, auth, ids["bystander"]) == before
    _snapshot(client, auth, ids["fuzzed"])
    assert client.get("/api/v1/fleet/hosts", headers=auth).status_code == 200
    # Both still check in normally.
    for agent in (bystander, fuzzed):
        reply = agent.post("config", {})
        assert reply.status_code in (200, 401)  # the fuzzer may have re-enrolled "fuzzed"
    assert "options" in bystander.post("config", {}).json()


def test_nul_and_surrogates_in_logs_are_stored_readably(
    client: httpx.Client, admin_token: str
) -> None:
    """PostgreSQL keeps no NUL in jsonb: NUL becomes U+FFFD on both backends; never a 500."""
    agent = Agent(client, SECRET, "nul", "uuid-nul")
    agent.enroll()
    line = {"name": "q\u0000", "columns": {"k\u0000": "a\u0000b"}, "action": "added"}
    raw = orjson.dumps({"log_type": "result", "data": [line], "node_key": agent.node_key})
    assert b"\\u0000" in raw
    reply = client.post("/api/v1/osquery/log", content=raw)
    assert reply.status_code == 200 and reply.json() == {}
    host = next(
        h
        for h in client.get(
            "/api/v1/fleet/hosts", headers={"Authorization": f"Bearer {admin_token}"}
        ).json()["hosts"]
        if h["hostname"] == "nul"
    )
    logs = client.get(
        f"/api/v1/fleet/hosts/{host['id']}/logs",
        headers={"Authorization": f"Bearer {admin_token}"},
    ).json()["logs"]
    assert [(x["name"], x["columns"]) for x in logs] == [("q\ufffd", {"k\ufffd": "a\ufffdb"})]
    surrogate = client.post(
        "/api/v1/osquery/log",
        content=b'{"log_type": "result", "data": ["\\ud800"], "node_key": "x"}',
    )
    assert surrogate.status_code == 400 and "JSON" in surrogate.json()["error"]


def test_body_over_the_limit_before_and_after_gzip(client: httpx.Client) -> None:
    """Huge bodies: 413 with `error`, plain or as a gzip bomb (10 MiB limit)."""
    agent = Agent(client, SECRET, "big", "uuid-big")
    agent.enroll()
    huge = {"log_type": "result", "data": ["x" * (11 * 1024 * 1024)]}
    for gzip_body in (False, True):
        reply = agent.post("log", huge, gzip_body=gzip_body)
        assert reply.status_code == 413 and "too large" in reply.json()["error"]
