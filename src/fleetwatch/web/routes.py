"""The browser UI: server-rendered shell pages under /ui, static files under /static.

Pages are thin HTML shells; their ES modules (static/js) call the same user API as every
other client. The session is the token from `POST /api/v1/fleet/login`, handed to
`POST /ui/session`, which keeps it in an HttpOnly, SameSite=Strict cookie (Secure over TLS);
the page carries that session's CSRF token in a meta tag for state-changing requests (see
`fleetwatch.api.auth`). Everything the pages load is served from here: the UI works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fleetwatch import __version__
from fleetwatch.api.auth import SESSION_COOKIE, bearer_token, csrf_token, resolve_token
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.errors import AuthFailed
from fleetwatch.fleet.users import User

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

#: Scripts, styles, connections and images only from this server; no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
#: Session cookie lifetime (seconds); the token itself also ends after
#: `session_idle_timeout` without use, at logout, or when the password changes.
SESSION_MAX_AGE = 7 * 24 * 3600
#: Where a login goes when it was not sent from a page (or `next` is not a local path).
HOME = "/ui/hosts"
#: Characters a browser removes from a URL before reading it.
_DROPPED = str.maketrans("", "", "\t\n\r")


@dataclass(frozen=True)
class Page:
    """A page of the UI: its template, title and the nav entry it highlights."""

    template: str
    title: str
    nav: str


PAGES: dict[str, Page] = {
    "hosts": Page("hosts.html", "Hosts", "hosts"),
    "live": Page("live.html", "Live query", "live"),
    "watch": Page("watch.html", "Watch", "watch"),
    "queries": Page("queries.html", "Saved queries", "queries"),
    "policies": Page("policies.html", "Policies", "policies"),
    "labels": Page("resource.html", "Labels", "labels"),
    "teams": Page("resource.html", "Teams", "teams"),
}


class SessionBody(BaseModel):
    token: str = Field(min_length=1, max_length=512)


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


async def _session_user(request: Request, services: ServicesDep) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return await services.users.user_for_token(token)
    except AuthFailed:
        return None


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def _render(request: Request, page: Page, user: User, **context: Any) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    return templates.TemplateResponse(
        request,
        page.template,
        {
            "page": page,
            "user": user,
            "csrf_token": csrf_token(token),
            "version": __version__,
            **context,
        },
        headers=_headers(),
    )


@router.get("/")
async def root(request: Request, services: ServicesDep) -> RedirectResponse:
    """To the hosts page when signed in, else to the login page."""
    user = await _session_user(request, services)
    return RedirectResponse("/ui/hosts" if user else "/ui/login", status_code=303)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/hosts", status_code=303)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: `target` when it is a path on this server, else the UI
    home. A browser reads `//host` and `/\\host` (also with tabs or newlines inside, which
    it drops) as another site, so only `/` then a character other than `/` or `\\` is
    accepted, with no control character and no scheme, and the start must stay so after
    percent-decoding (in case anything decodes it again)."""
    if not target or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in target):
        return HOME
    seen = target
    for _ in range(4):  # each round undoes one level of percent-encoding
        if not _same_origin_path(seen):
            return HOME
        decoded = unquote(seen)
        if decoded == seen:
            return target
        seen = decoded
    return HOME  # encoded more deeply than any real link


def _same_origin_path(path: str) -> bool:
    path = path.translate(_DROPPED)
    if len(path) < 2 or path[0] != "/" or path[1] in "/\\":
        return False
    parts = urlsplit(path)
    return not parts.scheme and not parts.netloc


@router.get("/ui/login")
async def login_page(request: Request) -> Response:
    """The login form; it posts to /api/v1/fleet/login and then to /ui/session, then goes to
    `next` when that is a path on this server (never another site)."""
    return templates.TemplateResponse(
        request,
        "login.html",
        {"version": __version__, "next_page": safe_next(request.query_params.get("next"))},
        headers=_headers(),
    )


@router.post("/ui/session")
async def create_session(
    body: SessionBody, request: Request, response: Response, services: ServicesDep
) -> dict[str, Any]:
    """Keep a token from /api/v1/fleet/login in the HttpOnly session cookie."""
    user = await resolve_token(services, body.token)
    response.set_cookie(
        SESSION_COOKIE,
        body.token,
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or services.settings.uses_tls,
    )
    return {"user": user.to_json(), "csrf_token": csrf_token(body.token)}


@router.delete("/ui/session")
async def delete_session(request: Request, services: ServicesDep) -> Response:
    """Log out: revoke the session's token and clear the cookie (needs the CSRF header)."""
    token = bearer_token(request)
    if token:
        await services.users.revoke_token(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", samesite="strict", httponly=True)
    return response


@router.get("/ui/hosts/{host_id}")
async def host_page(host_id: int, request: Request, services: ServicesDep) -> Response:
    user = await _session_user(request, services)
    if user is None:
        return _to_login(request)
    page = Page("host.html", "Host", "hosts")
    return _render(request, page, user, host_id=host_id)


@router.get("/ui/{name}")
async def page(name: str, request: Request, services: ServicesDep) -> Response:
    """One of the UI's pages (login first when there is no valid session)."""
    found = PAGES.get(name)
    if found is None:
        raise ApiError(404, f"no page /ui/{name}; the pages are " + ", ".join(PAGES))
    user = await _session_user(request, services)
    if user is None:
        return _to_login(request)
    return _render(request, found, user, resource=name)


def install_web(app: FastAPI) -> None:
    """Mount the UI's pages and static files on the app."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
