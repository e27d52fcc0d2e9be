"""/docs collections over a real socket, on both backends: Xenon-like CRUD and errors."""

from __future__ import annotations

import time

import httpx

from tests.server import RunningServer


def client(server: RunningServer, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=30
    )


def test_create_read_update_delete(live_server: RunningServer, admin_token: str) -> None:
    with client(live_server, admin_token) as c:
        made = c.post("/docs/employees", json={"name": "ann", "age": 30})
        assert made.status_code == 200, made.text
        doc = made.json()
        link = doc["documentSelfLink"]
        assert link.startswith("/docs/employees/")
        assert doc["documentKind"] == "docs:employees"
        assert doc["documentVersion"] == 0 and doc["documentUpdateAction"] == "POST"

        named = c.post("/docs/employees", json={"documentSelfLink": "bob", "name": "bob"})
        assert named.status_code == 200
        assert named.json()["documentSelfLink"] == "/docs/employees/bob"
        full = c.post(
            "/docs/employees", json={"documentSelfLink": "/docs/employees/cy", "name": "cy"}
        )
        assert full.json()["documentSelfLink"] == "/docs/employees/cy"
        again = c.post("/docs/employees", json={"documentSelfLink": "bob", "name": "x"})
        assert again.status_code == 409 and "already exists" in again.json()["error"]

        got = c.get(link)
        assert got.status_code == 200 and got.json()["name"] == "ann"

        # PUT replaces; a client may send back what it read (built-in fields are ignored)
        body = {**got.json(), "name": "anne"}
        del body["age"]
        put = c.put(link, json=body)
        assert put.status_code == 200, put.text
        assert put.json()["name"] == "anne" and "age" not in put.json()
        assert put.json()["documentVersion"] == 1 and put.json()["documentUpdateAction"] == "PUT"

        patched = c.patch(link, json={"age": 31, "name": None})
        assert patched.json()["age"] == 31 and patched.json()["name"] == "anne"
        assert patched.json()["documentUpdateAction"] == "PATCH"

        listed = c.get("/docs/employees").json()
        assert sorted(listed["documentLinks"]) == sorted(
            [link, "/docs/employees/bob", "/docs/employees/cy"]
        )
        expanded = c.get("/docs/employees", params={"expand": "true"}).json()
        assert expanded["documents"][link]["age"] == 31

        deleted = c.delete(link)
        assert deleted.status_code == 200
        assert deleted.json()["documentUpdateAction"] == "DELETE"
        assert deleted.json()["age"] == 31  # the last state
        assert c.get(link).status_code == 404
        assert "no document" in c.get(link).json()["error"]
        assert c.delete(link).status_code == 404
        assert link not in c.get("/docs/employees").json()["documentLinks"]
        # other collections are separate
        assert c.get("/docs/other/bob").status_code == 404


def test_bad_input_gets_4xx_with_a_reason(live_server: RunningServer, admin_token: str) -> None:
    with client(live_server, admin_token) as c:
        cases = [
            c.post("/docs/e", content=b"not json"),
            c.post("/docs/e", json=[1, 2]),
            c.post("/docs/e", content=b""),
            c.post("/docs/e", json={"documentKind": "docs:other"}),
            c.post("/docs/e", json={"documentSelfLink": "/elsewhere/x"}),
            c.post("/docs/e", json={"documentSelfLink": "a/b"}),
            c.post("/docs/e", json={"documentSelfLink": 5}),
            c.post("/docs/e", json={"documentExpirationTimeMicros": "soon"}),
            c.post("/docs/bad name", json={}),
            c.put("/docs/e/missing", json={"a": 1}),
            c.patch("/docs/e/missing", json={"a": 1}),
            c.post("/docs/e", content=b"[" * 5000 + b"]" * 5000),
        ]
        for reply in cases:
            assert 400 <= reply.status_code < 500, reply.text
            assert reply.json()["error"]
        assert [r.status_code for r in cases[9:11]] == [404, 404]
        made = c.post("/docs/e", json={"documentSelfLink": "x"}).json()
        mismatch = c.put("/docs/e/x", json={"documentSelfLink": "/docs/e/y"})
        assert mismatch.status_code == 400 and "does not match" in mismatch.json()["error"]
        assert made["documentVersion"] == 0
    anonymous = httpx.get(f"{live_server.url}/docs/e")
    assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["error"]


def test_expired_documents_are_deleted(live_server: RunningServer, admin_token: str) -> None:
    with client(live_server, admin_token) as c:
        doc = c.post("/docs/tmp", json={"documentSelfLink": "t", "v": 1}).json()
        assert doc["documentExpirationTimeMicros"] == 0
        c.patch("/docs/tmp/t", json={"documentExpirationTimeMicros": 1})
        deadline = time.monotonic() + 20
        while c.get("/docs/tmp/t").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.get("/docs/tmp/t").status_code == 404
        forever = c.post(
            "/docs/tmp", json={"documentSelfLink": "f", "documentExpirationTimeMicros": 2**63 - 1}
        )
        assert forever.json()["documentExpirationTimeMicros"] == 2**63 - 1
        time.sleep(1.5)
        assert c.get("/docs/tmp/f").status_code == 200
