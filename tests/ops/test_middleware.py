"""The request middleware: request ids, and user-API input no database can store (NUL,
unpaired surrogates) refused with a JSON 400 on both backends instead of a 500."""

from __future__ import annotations

import json

import httpx
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.ops.middleware import unstorable
from tests.server import RunningServer

storable_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
)


@given(
    value=st.recursive(
        storable_text, lambda inner: st.lists(inner) | st.dictionaries(storable_text, inner)
    )
)
def test_storable_json_passes(value: object) -> None:
    for ensure_ascii in (True, False):
        assert unstorable(json.dumps(value, ensure_ascii=ensure_ascii).encode()) is None


@given(before=storable_text, after=storable_text, bad=st.sampled_from(["\x00", "\ud800", "\udfff"]))
def test_nul_and_lone_surrogates_are_found(before: str, after: str, bad: str) -> None:
    raw = json.dumps({"k": before + bad + after}).encode()  # ensure_ascii: written as escapes
    assert unstorable(raw) is not None


def test_escaped_backslashes_are_not_escapes() -> None:
    assert unstorable(json.dumps({"k": "\\u0000 and \\ud800"}).encode()) is None
    assert unstorable(json.dumps({"k": "\\\x00"}).encode()) is not None


def test_request_ids(live_server: RunningServer, admin_token: str) -> None:
    url = f"{live_server.url}/api/v1/fleet/me"
    auth = {"Authorization": f"Bearer {admin_token}"}
    first = httpx.get(url, headers=auth).headers["x-request-id"]
    second = httpx.get(url, headers=auth).headers["x-request-id"]
    assert first != second
    given_id = httpx.get(url, headers={**auth, "X-Request-ID": "lb-1234_abc"})
    assert given_id.headers["x-request-id"] == "lb-1234_abc"
    odd = httpx.get(url, headers={**auth, "X-Request-ID": "not ok!" + "x" * 80})
    assert "not ok" not in odd.headers["x-request-id"]  # replaced, not echoed into the logs


def test_unstorable_input_is_a_json_400(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        for body in (b'{"name": "a\\u0000b"}', b'{"name": "\\ud800"}', b'{"\\udc00": 1}'):
            reply = client.post("/docs/things", content=body)
            assert reply.status_code == 400, reply.text
            assert (
                "cannot be stored" in reply.json()["error"] or "surrogate" in reply.json()["error"]
            )
        login = client.post(
            "/api/v1/fleet/login", content=b'{"email": "a\\u0000@x", "password": "p"}'
        )
        assert login.status_code == 400 and "NUL" in login.json()["error"]
        query = client.get("/api/v1/fleet/hosts?query=a%00b")
        assert query.status_code == 400 and "%00" in query.json()["error"]
        fine = client.post("/docs/things", content=b'{"name": "ok \\ud83d\\ude00"}')
        assert fine.status_code == 200, fine.text
        assert client.get(fine.json()["documentSelfLink"]).json()["name"] == "ok \U0001f600"
