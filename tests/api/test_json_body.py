"""User API bodies sent without a JSON Content-Type (plain `curl -d`) are read as JSON, or
answered with what to send instead."""

from __future__ import annotations

import httpx
import pytest

from fleetwatch.api.json_body import is_json_type, media_type
from tests.server import RunningServer

LOGIN = b'{"email": "admin@example.com", "password": "admin-password-1"}'


def test_media_types() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type("") == ""
    assert is_json_type("application/json") and is_json_type("application/merge-patch+json")
    assert not is_json_type("application/x-www-form-urlencoded") and not is_json_type("")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
def test_a_json_body_without_its_content_type_is_read_as_json(
    live_server: RunningServer, admin_token: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with httpx.Client(base_url=live_server.url) as client:
        if content_type is None:
            request = client.build_request("POST", "/api/v1/fleet/login", content=LOGIN)
            assert "Content-Type" not in request.headers  # raw bytes go unlabelled
            login = client.send(request)
        else:
            login = client.post("/api/v1/fleet/login", content=LOGIN, headers=headers)
        assert login.status_code == 200, login.text
        assert login.json()["user"]["email"] == "admin@example.com"
        auth = {"Authorization": f"Bearer {admin_token}"}
        created = client.post(
            "/api/v1/fleet/queries",
            content=b'{"name": "curl", "query": "SELECT 1"}',
            headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert created.status_code == 201, created.text
        assert created.json()["query"]["name"] == "curl"


def test_a_body_that_is_not_json_is_told_to_send_json(
    live_server: RunningServer, admin_token: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=auth) as client:
        form = client.post(
            "/api/v1/fleet/queries",
            content=b"name=curl&query=SELECT+1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 400
        error = form.json()["error"]
        assert "is not JSON" in error and "Content-Type: application/json" in error
        text = client.post(
            "/api/v1/fleet/queries",
            content=b'{"name": "t", "query": "SELECT 1"}',
            headers={"Content-Type": "text/plain"},
        )
        assert text.status_code == 415
        assert text.json()["error"] == (
            "Content-Type text/plain is not accepted here: "
            "send a JSON body with Content-Type: application/json"
        )
        # JSON ones and bodiless ones are untouched
        assert client.get("/api/v1/fleet/queries").json()["queries"] == []
        assert client.post(
            "/api/v1/fleet/queries", json={"name": "j", "query": "SELECT 1"}
        ).is_success
        assert client.post("/api/v1/fleet/logout").status_code == 200
