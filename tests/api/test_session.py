"""Login, tokens and logout over a real socket."""

from __future__ import annotations

import time

import httpx

from fleetwatch.api.auth import SESSION_COOKIE, csrf_token
from fleetwatch.config import Settings
from tests.conftest import login
from tests.server import RunningServer, running_server


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


def test_one_address_spraying_a_password_over_accounts_gets_429_with_retry_after(
    server_settings: Settings,
) -> None:
    # 3 a minute (one back every 20 s) rather than the default 30, so that the time the
    # attempts take cannot refill the bucket during the test.
    settings = server_settings.model_copy(update={"login_address_limit": 3})
    good = {"email": "admin@example.com", "password": "admin-password-1"}
    with running_server(settings) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(12):  # good logins do not count against the address
            assert client.post("/api/v1/fleet/login", json=good).status_code == 200
        for i in range(3):  # each guess on another account: the per-account limit is 10
            guess = {"email": f"user{i}@example.com", "password": "Summer2026!"}
            assert client.post("/api/v1/fleet/login", json=guess).status_code == 401
        refused = client.post(
            "/api/v1/fleet/login", json={"email": "user9@example.com", "password": "Summer2026!"}
        )
        assert refused.status_code == 429
        assert "too many login attempts" in refused.json()["error"]
        retry_after = refused.headers["Retry-After"]
        assert 1 <= int(retry_after) <= 20
        assert f"retry in {retry_after} s" in refused.json()["error"]
        # the address is limited whatever the account, the right password included
        assert client.post("/api/v1/fleet/login", json=good).status_code == 429


def test_an_idle_session_expires_and_a_used_one_does_not(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"session_idle_timeout": 1.0})
    with running_server(settings) as server, httpx.Client(base_url=server.url) as client:
        kept, idle = login(server), login(server)
        script = client.post(
            "/api/v1/fleet/me/tokens",
            json={"name": "ci", "password": "admin-password-1"},
            headers={"Authorization": f"Bearer {kept}"},
        ).json()["token"]
        for _ in range(6):  # 1.5 s in all, used every 0.25 s: never idle for 1 s
            time.sleep(0.25)
            me = client.get("/api/v1/fleet/me", headers={"Authorization": f"Bearer {kept}"})
            assert me.status_code == 200
        expired = client.get("/api/v1/fleet/me", headers={"Authorization": f"Bearer {idle}"})
        assert expired.status_code == 401
        assert "session expired after 1 s without use" in expired.json()["error"]
        api = client.get("/api/v1/fleet/me", headers={"Authorization": f"Bearer {script}"})
        assert api.status_code == 200  # a named API token does not idle out


def api_tokens(client: httpx.Client) -> list[str]:
    tokens = client.get("/api/v1/fleet/me/tokens").json()["tokens"]
    return [t["name"] for t in tokens if t["kind"] == "api"]


def test_a_browser_session_needs_the_password_to_create_an_api_token(
    live_server: RunningServer,
) -> None:
    """A stolen (or ridden) session cookie cannot mint a token that outlives the session:
    POST /me/tokens from the cookie needs the current password in the body."""
    session = login(live_server)
    csrf = {"X-CSRF-Token": csrf_token(session)}
    with httpx.Client(base_url=live_server.url, cookies={SESSION_COOKIE: session}) as ui:
        missing = ui.post("/api/v1/fleet/me/tokens", json={"name": "stolen"}, headers=csrf)
        assert missing.status_code == 400
        assert "password: send your current password" in missing.json()["error"]
        wrong = ui.post(
            "/api/v1/fleet/me/tokens",
            json={"name": "stolen", "password": "not-the-password"},
            headers=csrf,
        )
        assert wrong.status_code == 403
        assert "password is not your current password" in wrong.json()["error"]
        assert api_tokens(ui) == []
        made = ui.post(
            "/api/v1/fleet/me/tokens",
            json={"name": "mine", "password": "admin-password-1"},
            headers=csrf,
        )
        assert made.status_code == 201, made.text
        assert api_tokens(ui) == ["mine"]
    # a script holding an API token is not asked; a password it sends is checked
    script = made.json()["token"]
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {script}"}
    ) as api:
        assert api.post("/api/v1/fleet/me/tokens", json={"name": "ci"}).status_code == 201
        wrong = api.post("/api/v1/fleet/me/tokens", json={"name": "ci", "password": "nope-nope"})
        assert wrong.status_code == 403


def test_a_login_session_sent_as_a_bearer_token_still_needs_the_password(
    live_server: RunningServer,
) -> None:
    """The rule is about the token's kind, not how it arrives: the cookie's value sent as
    `Authorization: Bearer` (no cookie, so no CSRF check either) is still a login session."""
    session = login(live_server)
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {session}"}
    ) as api:
        missing = api.post("/api/v1/fleet/me/tokens", json={"name": "stolen"})
        assert missing.status_code == 400
        assert "password: send your current password" in missing.json()["error"]
        wrong = api.post("/api/v1/fleet/me/tokens", json={"name": "stolen", "password": "nope-no"})
        assert wrong.status_code == 403
        assert api_tokens(api) == []
        made = api.post(
            "/api/v1/fleet/me/tokens", json={"name": "mine", "password": "admin-password-1"}
        )
        assert made.status_code == 201, made.text
        assert api_tokens(api) == ["mine"]


def test_password_guesses_through_token_creation_count_against_the_login_limit(
    live_server: RunningServer,
) -> None:
    session = login(live_server)
    cookies = {SESSION_COOKIE: session}
    headers = {"X-CSRF-Token": csrf_token(session)}
    with httpx.Client(base_url=live_server.url, cookies=cookies, headers=headers) as ui:
        codes = [
            ui.post(
                "/api/v1/fleet/me/tokens", json={"name": "x", "password": f"guess-{n}"}
            ).status_code
            for n in range(12)
        ]
    assert codes[:9].count(403) == 9 and codes[-1] == 429
