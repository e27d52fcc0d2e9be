"""Enroll secrets API: list, add (given or generated), revoke."""

from __future__ import annotations

import httpx

from tests.server import RunningServer


def test_secrets_lifecycle(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        listed = client.get("/api/v1/fleet/secrets").json()["secrets"]
        assert [s["secret"] for s in listed] == ["test-enroll-secret"]
        assert "created_at" in listed[0]
        generated = client.post("/api/v1/fleet/secrets").json()["secret"]
        assert len(generated["secret"]) >= 24
        given = client.post("/api/v1/fleet/secrets", json={"secret": "mine"})
        assert given.status_code == 201
        dup = client.post("/api/v1/fleet/secrets", json={"secret": "mine"})
        assert dup.status_code == 409
        empty = client.post("/api/v1/fleet/secrets", json={"secret": "   "})
        assert empty.status_code == 400 and "empty" in empty.json()["error"]
        names = {s["secret"] for s in client.get("/api/v1/fleet/secrets").json()["secrets"]}
        assert names == {"test-enroll-secret", generated["secret"], "mine"}
        assert client.delete("/api/v1/fleet/secrets/mine").status_code == 200
        assert client.delete("/api/v1/fleet/secrets/mine").status_code == 404
