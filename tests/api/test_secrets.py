"""Enroll secrets API: list, add (given or generated), revoke."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from fleetwatch.config import Settings
from tests.server import RunningServer

MINE = "my-own-enroll-secret"


def test_secrets_lifecycle(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        listed = client.get("/api/v1/fleet/secrets").json()["secrets"]
        assert [s["secret"] for s in listed] == ["test-enroll-secret"]
        assert "created_at" in listed[0]
        generated = client.post("/api/v1/fleet/secrets").json()["secret"]
        assert len(generated["secret"]) >= 24
        given = client.post("/api/v1/fleet/secrets", json={"secret": MINE})
        assert given.status_code == 201
        dup = client.post("/api/v1/fleet/secrets", json={"secret": MINE})
        assert dup.status_code == 409
        empty = client.post("/api/v1/fleet/secrets", json={"secret": "   "})
        assert empty.status_code == 400 and "empty" in empty.json()["error"]
        names = {s["secret"] for s in client.get("/api/v1/fleet/secrets").json()["secrets"]}
        assert names == {"test-enroll-secret", generated["secret"], MINE}
        assert client.delete(f"/api/v1/fleet/secrets/{MINE}").status_code == 200
        assert client.delete(f"/api/v1/fleet/secrets/{MINE}").status_code == 404


def test_a_short_secret_is_refused(live_server: RunningServer, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        for short in ("x", "a" * 15, "  fifteen-chars  "):
            reply = client.post("/api/v1/fleet/secrets", json={"secret": short})
            assert reply.status_code == 400, short
            assert "at least 16 characters" in reply.json()["error"]
        team = client.post("/api/v1/fleet/teams", json={"name": "ops"}).json()["team"]["id"]
        reply = client.post(f"/api/v1/fleet/teams/{team}/secrets", json={"secret": "s1"})
        assert reply.status_code == 400 and "at least 16" in reply.json()["error"]
        listed = client.get("/api/v1/fleet/secrets").json()["secrets"]
        assert [s["secret"] for s in listed] == ["test-enroll-secret"]
        assert client.post("/api/v1/fleet/secrets", json={"secret": "a" * 16}).status_code == 201


def test_the_setting_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(enroll_secret="s3cret")
    assert Settings(enroll_secret="a" * 16).enroll_secret == "a" * 16
