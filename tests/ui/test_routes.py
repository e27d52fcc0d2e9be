"""The UI's routes without a browser: redirects, the session cookie and its CSRF check on
the same API, security headers, and every page asset served by fleetwatch itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from fleetwatch.api.auth import SESSION_COOKIE, csrf_token
from fleetwatch.config import Settings
from fleetwatch.web.routes import PAGES, STATIC_DIR, safe_next
from tests.server import RunningServer, running_server
from tests.ui.harness import ADMIN_EMAIL, ADMIN_PASSWORD, ui_settings

TEMPLATES = Path(STATIC_DIR).parent / "templates"


@contextmanager
def session(server: RunningServer) -> Iterator[tuple[httpx.Client, str]]:
    """A client holding the session cookie, and the session's token."""
    with httpx.Client(base_url=server.url, verify=False) as client:
        login = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        token: str = client.post("/api/v1/fleet/login", json=login).json()["token"]
        reply = client.post("/ui/session", json={"token": token})
        assert reply.status_code == 200, reply.text
        assert reply.json()["csrf_token"] == csrf_token(token)
        yield client, token


def test_pages_need_a_session_and_keep_where_you_were_going(ui_server: RunningServer) -> None:
    with httpx.Client(base_url=ui_server.url) as anonymous:
        assert anonymous.get("/").headers["location"] == "/ui/login"
        for name in PAGES:
            reply = anonymous.get(f"/ui/{name}?x=1")
            assert reply.status_code == 303
            assert reply.headers["location"] == f"/ui/login?next=%2Fui%2F{name}%3Fx%3D1"
        assert (
            anonymous.get("/ui/hosts/3").headers["location"] == "/ui/login?next=%2Fui%2Fhosts%2F3"
        )
        assert anonymous.get("/ui/login").status_code == 200
    with session(ui_server) as (client, _):
        assert client.get("/").headers["location"] == "/ui/hosts"
        for name in PAGES:
            assert client.get(f"/ui/{name}").status_code == 200
        missing = client.get("/ui/nothing-here")
        assert missing.status_code == 404
        assert "no page /ui/nothing-here" in missing.json()["error"]


@pytest.mark.parametrize(
    "target",
    [
        "/%5Cevil.example/phish",  # /\\evil.example: a browser reads it as //evil.example
        "//evil.example/phish",
        "/%2F/evil.example",  # decodes to //evil.example
        "/%255Cevil.example",  # decodes, twice, to /\\evil.example
        "/%09/evil.example",  # a browser drops the tab: //evil.example
        "%2F%2Fevil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/",
        "ui/hosts",
        " /ui/hosts",
    ],
)
def test_login_goes_back_only_to_paths_on_this_server(
    ui_server: RunningServer, target: str
) -> None:
    with httpx.Client(base_url=ui_server.url) as anonymous:
        page = anonymous.get(f"/ui/login?next={target}")
    assert page.status_code == 200
    assert 'data-next="/ui/hosts"' in page.text


def test_login_goes_back_to_where_you_were_going(ui_server: RunningServer) -> None:
    with httpx.Client(base_url=ui_server.url) as anonymous:
        page = anonymous.get("/ui/login?next=%2Fui%2Flive%3Fx%3D1")
    assert 'data-next="/ui/live?x=1"' in page.text
    assert safe_next("/ui/live?sql=select%201%0A") == "/ui/live?sql=select%201%0A"
    assert safe_next("/ui/hosts/3") == "/ui/hosts/3"
    assert safe_next("/\\evil.example") == safe_next("/ui\n") == safe_next(None) == "/ui/hosts"


def test_the_session_cookie_is_httponly_strict_and_secure_only_over_tls(
    ui_server: RunningServer, tmp_path: Path
) -> None:
    with session(ui_server) as (client, _):
        cookie = client.cookies.jar
        (only,) = [c for c in cookie if c.name == SESSION_COOKIE]
        assert only.has_nonstandard_attr("HttpOnly")
        assert only.get_nonstandard_attr("SameSite") == "strict"
        assert not only.secure
    tls: Settings = ui_settings(tmp_path / "tls").model_copy(update={"tls_self_signed": True})
    with running_server(tls) as server:
        with session(server) as (client, _):
            (secure,) = [c for c in client.cookies.jar if c.name == SESSION_COOKIE]
            assert secure.secure


def test_a_session_needs_a_valid_token(ui_server: RunningServer) -> None:
    reply = httpx.post(f"{ui_server.url}/ui/session", json={"token": "not-a-token"})
    assert reply.status_code == 401
    assert "error" in reply.json()
    assert SESSION_COOKIE not in reply.cookies
    bad = httpx.post(f"{ui_server.url}/ui/session", json={})
    assert bad.status_code == 400
    assert "token" in bad.json()["error"]


def test_the_cookie_authenticates_the_api_and_writes_need_the_csrf_header(
    ui_server: RunningServer,
) -> None:
    body = {"name": "csrf check", "query": "SELECT 1"}
    with session(ui_server) as (client, token):
        assert client.get("/api/v1/fleet/me").json()["user"]["email"] == ADMIN_EMAIL
        missing = client.post("/api/v1/fleet/queries", json=body)
        assert missing.status_code == 403
        assert "X-CSRF-Token" in missing.json()["error"]
        wrong = client.post(
            "/api/v1/fleet/queries", json=body, headers={"X-CSRF-Token": csrf_token("other")}
        )
        assert wrong.status_code == 403
        made = client.post(
            "/api/v1/fleet/queries", json=body, headers={"X-CSRF-Token": csrf_token(token)}
        )
        assert made.status_code == 201, made.text
        query_id = made.json()["query"]["id"]
        # A bearer token needs no CSRF header (a cross-site page cannot set it).
        gone = httpx.delete(
            f"{ui_server.url}/api/v1/fleet/queries/{query_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert gone.status_code == 200


def test_the_page_carries_its_sessions_csrf_token_and_strict_headers(
    ui_server: RunningServer,
) -> None:
    with session(ui_server) as (client, token):
        page = client.get("/ui/live")
    assert f'<meta name="csrf-token" content="{csrf_token(token)}">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"


def test_logout_revokes_the_token_and_clears_the_cookie(ui_server: RunningServer) -> None:
    with session(ui_server) as (client, token):
        assert client.delete("/ui/session").status_code == 403  # no CSRF header
        out = client.delete("/ui/session", headers={"X-CSRF-Token": csrf_token(token)})
        assert out.status_code == 204
        assert (
            SESSION_COOKIE in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
        )
    revoked = httpx.get(
        f"{ui_server.url}/api/v1/fleet/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 401


def test_a_websocket_with_the_cookie_must_come_from_this_servers_pages(
    ui_server: RunningServer,
) -> None:
    with session(ui_server) as (_, token):
        pass
    url = (
        ui_server.url.replace("http://", "ws://")
        + "/api/v1/fleet/results/websocket?campaign_id=999"
    )
    headers = {"Cookie": f"{SESSION_COOKIE}={token}", "Origin": "http://evil.example"}
    with connect(url, additional_headers=headers) as ws:
        assert "this server's pages" in ws.recv(timeout=10)
    same_origin = {**headers, "Origin": ui_server.url}
    with connect(url, additional_headers=same_origin) as ws:
        # Authenticated by the cookie: the error is now about the campaign itself.
        assert "999" in ws.recv(timeout=10)


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_every_asset_is_served_by_fleetwatch_and_nothing_is_fetched_from_outside(
    ui_server: RunningServer,
) -> None:
    pages = ["/ui/login", "/ui/hosts/1", *(f"/ui/{name}" for name in PAGES)]
    with session(ui_server) as (client, _):
        assets = {a for page in pages for a in _assets(client.get(page).text)}
        modules = {
            f"/static/{path.relative_to(STATIC_DIR).as_posix()}"
            for path in STATIC_DIR.rglob("*")
            if path.is_file()
        }
        assert {"/static/css/app.css", "/static/js/live.js"} <= assets
        for asset in sorted(assets | modules):
            reply = client.get(asset)
            assert reply.status_code == 200, asset
    for path in [*TEMPLATES.rglob("*.html"), *STATIC_DIR.rglob("*.js"), *STATIC_DIR.rglob("*.css")]:
        text = path.read_text(encoding="utf-8")
        # No script, style, font or image from another host (license URLs in comments aside).
        assert not re.search(r'(?:src|href|url\()\s*=?\s*["\']?https?://', text), path
        assert not re.search(r'\bimport\b[^;]*["\']https?://', text), path
        assert "fonts.googleapis" not in text


@pytest.mark.parametrize("module", sorted(p.name for p in (STATIC_DIR / "js").glob("*.js")))
def test_each_module_imports_only_files_that_exist(module: str) -> None:
    text = (STATIC_DIR / "js" / module).read_text(encoding="utf-8")
    for target in re.findall(r'^import .* from "([^"]+)";$', text, flags=re.M):
        assert (STATIC_DIR / "js" / target).resolve().is_file(), f"{module} imports {target}"
