"""Bearer-token authentication for the user API.

`current_user` is the FastAPI dependency every user route uses. The token comes from
`Authorization: Bearer <token>`; WebSocket and SSE endpoints may also take it from a `token`
query parameter (browsers cannot set headers there) through `user_from_connection`.
The browser UI's session cookie is accepted when neither is given: a request that changes
state with it must carry the CSRF token of that session in `X-CSRF-Token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
from typing import Annotated

import orjson
from fastapi import Depends, WebSocket
from starlette.requests import HTTPConnection

from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.errors import AuthFailed
from fleetwatch.fleet.users import TokenKind, TokenOwner, User, hash_token
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


async def confirm_password(
    conn: HTTPConnection,
    services: Services,
    user: User,
    password: str | None,
    *,
    field: str,
    why: str,
    wrong_status: int = 403,
) -> None:
    """Check that `password` (the body's `field`) is the user's current password: 400 when
    it is missing, `wrong_status` when it is wrong, 429 past the login limits (guesses count
    against them, so a stolen session cannot try passwords faster than a login)."""
    if not password:
        raise ApiError(400, f"{field}: send your current password {why} (as {field})")
    address = conn.client.host if conn.client else ""
    wait = await services.login_limiter.check(user.email, address)
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(429, f"too many wrong passwords; retry in {seconds} s", retry_after=seconds)
    try:
        await services.users.check_own_password(user.id, password)
    except AuthFailed as exc:
        raise ApiError(
            wrong_status, f"{field} is not your current password; send the one you log in with"
        ) from exc
    await services.login_limiter.reset(user.email, address)


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
    return (await resolve_owner(services, token)).user


async def resolve_owner(services: Services, token: str | None) -> TokenOwner:
    """The user of a token and its kind; a 401 ApiError as `resolve_token`."""
    if not token:
        raise ApiError(
            401,
            "authentication required: send 'Authorization: Bearer <token>' "
            "(POST /api/v1/fleet/login returns a token)",
        )
    try:
        return await services.users.owner_of_token(token)
    except AuthFailed as exc:
        raise ApiError(401, str(exc)) from exc


async def current_user(conn: HTTPConnection, services: ServicesDep) -> User:
    """The authenticated user of an HTTP request (bearer header or session cookie)."""
    owner = await resolve_owner(services, bearer_token(conn))
    conn.state.token_kind = owner.kind
    return owner.user


def token_kind(conn: HTTPConnection) -> TokenKind:
    """The kind of token the request was authenticated with (by `CurrentUser`): `session`
    (from /login: the UI's cookie holds one) or `api`, however it was sent; a login session
    sent as `Authorization: Bearer` is still a session."""
    kind: TokenKind = conn.state.token_kind
    return kind


async def user_from_connection(conn: HTTPConnection, services: ServicesDep) -> User:
    """The authenticated user of a streaming request: header or `?token=`."""
    token = bearer_token(conn, allow_query=True)
    owner = await resolve_owner(services, token)
    conn.state.token_kind = owner.kind
    _remember_token(conn, token)
    return owner.user


def _remember_token(conn: HTTPConnection, token: str | None) -> None:
    conn.state.token_hash = hash_token(token or "")


def stream_token_hash(conn: HTTPConnection) -> str:
    """The stored hash of the token a stream was authenticated with (by `StreamUser` or
    `websocket_user`): the stream ends when that token is revoked."""
    token_hash: str = conn.state.token_hash
    return token_hash


#: How long a WebSocket opened without a token has to send its auth message.
WEBSOCKET_AUTH_TIMEOUT = 5.0
#: WebSocket close codes for a refused stream: 4000 + the HTTP status (the private range).
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
_AUTH_MESSAGE = '{"type": "auth", "data": {"token": ...}}'


async def websocket_user(websocket: WebSocket, services: Services) -> User:
    """The user of an accepted WebSocket: the token from the header, `?token=` or the
    session cookie, else from a first auth message sent within `WEBSOCKET_AUTH_TIMEOUT`
    (browsers cannot set headers on a WebSocket). A 401 ApiError saying what to send."""
    token = bearer_token(websocket, allow_query=True)
    if token is None:
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), WEBSOCKET_AUTH_TIMEOUT)
        except TimeoutError:
            raise ApiError(
                401,
                f"no token: send 'Authorization: Bearer <token>', ?token=, or {_AUTH_MESSAGE} "
                f"within {WEBSOCKET_AUTH_TIMEOUT:g} s of connecting",
            ) from None
        except (KeyError, RuntimeError):  # a binary frame, or the client closed
            raw = ""
        try:
            first = orjson.loads(raw)
        except orjson.JSONDecodeError:
            first = None
        if not isinstance(first, dict) or first.get("type") != "auth":
            raise ApiError(401, f"send {_AUTH_MESSAGE} first (or the token in the header)")
        data = first.get("data")
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise ApiError(401, "the auth message needs data.token (a string)")
    user = await resolve_token(services, token)
    _remember_token(websocket, token)
    return user


async def close_websocket(
    websocket: WebSocket, exc: ApiError, message: dict[str, object] | None = None
) -> None:
    """Refuse a stream: an error message (`{"type": "error", "error": ...}` unless the
    stream's own shape is given), then a close whose code says why (4401 for a missing or
    bad token, 4403 for a forbidden one, 1008 otherwise) with the reason."""
    code = {401: CLOSE_UNAUTHORIZED, 403: CLOSE_FORBIDDEN}.get(exc.status, 1008)
    reason = exc.message.encode()[:120].decode(errors="ignore")  # a close reason is <= 123 B
    body = message if message is not None else {"type": "error", **exc.body()}
    with contextlib.suppress(Exception):  # the client may be gone already
        await websocket.send_text(orjson.dumps(body).decode())
        await websocket.close(code=code, reason=reason)


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
