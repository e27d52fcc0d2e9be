"""Login, tokens and logout over a real socket."""

from __future__ import annotations

import httpx

from tests.server import RunningServer


def test_login_returns_a_token_that_works(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        reply = client.post(
            "/api/v1/fleet/login",
            json={"email": "Admin@Example.com", "password": "admin-password-1"},
        )
        assert reply.status_code == 200
        body = reply.json()
        assert body["user"]["email"] == "admin@example.com"
        assert body["user"]["global_role"] == "admin"
        assert "password" not in str(body["user"])
        auth = {"Authorization": f"Bearer {body['token']}"}
        assert client.get("/api/v1/fleet/me", headers=auth).json()["user"]["id"] == 1
        assert client.post("/api/v1/fleet/logout", headers=auth).status_code == 200
        gone = client.get("/api/v1/fleet/me", headers=auth)
        assert gone.status_code == 401 and "unknown or revoked" in gone.json()["error"]


def test_wrong_credentials_are_401_with_one_message(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        wrong_password = client.post(
            "/api/v1/fleet/login", json={"email": "admin@example.com", "password": "nope-nope"}
        )
        no_user = client.post(
            "/api/v1/fleet/login", json={"email": "who@example.com", "password": "nope-nope"}
        )
        assert wrong_password.status_code == no_user.status_code == 401
        assert wrong_password.json() == no_user.json() == {"error": "wrong email or password"}


def test_login_body_errors_name_the_field(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        reply = client.post("/api/v1/fleet/login", json={"email": "a@b.c"})
        assert reply.status_code == 400
        assert "password" in reply.json()["error"]
        reply = client.post("/api/v1/fleet/login", content=b"{oops")
        assert reply.status_code == 400 and "error" in reply.json()


def test_every_user_route_requires_a_token(live_server: RunningServer) -> None:
    routes = [
        ("GET", "/api/v1/fleet/hosts"),
        ("GET", "/api/v1/fleet/hosts/1"),
        ("DELETE", "/api/v1/fleet/hosts/1"),
        ("GET", "/api/v1/fleet/hosts/1/logs"),
        ("GET", "/api/v1/fleet/users"),
        ("POST", "/api/v1/fleet/users"),
        ("GET", "/api/v1/fleet/secrets"),
        ("POST", "/api/v1/fleet/secrets"),
        ("GET", "/api/v1/fleet/config"),
        ("PUT", "/api/v1/fleet/config"),
        ("GET", "/api/v1/fleet/me"),
    ]
    with httpx.Client(base_url=live_server.url) as client:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                reply = client.request(method, path, headers=headers, json={})
                assert reply.status_code == 401, (method, path, reply.text)
                assert "error" in reply.json()
