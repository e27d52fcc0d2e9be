"""Bearer-token authentication for the user API.

`current_user` is the FastAPI dependency every user route uses. The token comes from
`Authorization: Bearer <token>`; WebSocket and SSE endpoints may also take it from a `token`
query parameter (browsers cannot set headers there) through `user_from_connection`.
The browser UI's session cookie is accepted when neither is given: a request that changes
state with it must carry the CSRF token of that session in `X-CSRF-Token`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.errors import AuthFailed
from fleetwatch.fleet.users import User
from fleetwatch.services import Services

#: The browser UI's session cookie (HttpOnly) holding a token from /api/v1/fleet/login.
SESSION_COOKIE = "fleetwatch_session"
#: The header that must carry `csrf_token(session)` on state-changing cookie requests.
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: derived from it, so it needs no storage and another
    site cannot plant one (a signed double-submit token)."""
    return hashlib.sha256(b"fleetwatch-csrf:" + session_token.encode()).hexdigest()


def bearer_token(conn: HTTPConnection, *, allow_query: bool = False) -> str | None:
    """The token of a request, or None: the bearer header, then (streams) `?token=`, then
    the UI's session cookie (a 403 ApiError when its CSRF check fails)."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        token = conn.query_params.get("token")
        if token:
            return token
    return cookie_token(conn)


def cookie_token(conn: HTTPConnection) -> str | None:
    """The session cookie's token; unsafe methods need the CSRF header, and a WebSocket
    opened with the cookie must come from this server's own pages (its Origin)."""
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    if conn.scope["type"] == "websocket":
        origin = conn.headers.get("origin")
        host = conn.headers.get("host", "")
        if origin is not None and origin.partition("://")[2] != host:
            raise ApiError(
                403, "a WebSocket opened with the session cookie must come from this server's pages"
            )
    elif conn.scope.get("method", "GET") not in _SAFE_METHODS:
        given = conn.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode(), csrf_token(token).encode()):
            raise ApiError(
                403,
                "a request authenticated by the session cookie must send the session's CSRF "
                "token in the X-CSRF-Token header (or use Authorization: Bearer)",
            )
    return token


async def resolve_token(services: Services, token: str | None) -> User:
    """The user of a token; a 401 ApiError saying what to send when it is missing or wrong."""
    if not token:
        raise ApiError(
            401,
            "authentication required: send 'Authorization: Bearer <token>' "
            "(POST /api/v1/fleet/login returns a token)",
        )
    try:
        return await services.users.user_for_token(token)
    except AuthFailed as exc:
        raise ApiError(401, str(exc)) from exc


async def current_user(conn: HTTPConnection, services: ServicesDep) -> User:
    """The authenticated user of an HTTP request (header only)."""
    return await resolve_token(services, bearer_token(conn))


async def user_from_connection(conn: HTTPConnection, services: ServicesDep) -> User:
    """The authenticated user of a streaming request: header or `?token=`."""
    return await resolve_token(services, bearer_token(conn, allow_query=True))


def require_admin(user: User) -> None:
    """403 unless the user is a global admin."""
    if user.global_role != "admin":
        raise ApiError(403, "this action needs the admin role")


#: A route parameter `user: CurrentUser` requires a valid bearer token.
CurrentUser = Annotated[User, Depends(current_user)]
#: The same for streaming endpoints, also accepting `?token=`.
StreamUser = Annotated[User, Depends(user_from_connection)]


async def global_user(user: CurrentUser) -> User:
    """A user with a global role: the whole-index APIs (continuous queries, documents) are
    not scoped to teams, so team-only users may not use them."""
    if user.global_role is None:
        raise ApiError(
            403,
            "continuous queries and documents need a global role (admin, maintainer or "
            "observer): team users see only their teams' hosts",
        )
    return user
