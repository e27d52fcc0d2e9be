"""Bearer-token authentication for the user API.

`current_user` is the FastAPI dependency every user route uses. The token comes from
`Authorization: Bearer <token>`; WebSocket and SSE endpoints may also take it from a `token`
query parameter (browsers cannot set headers there) through `user_from_connection`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.errors import AuthFailed
from fleetwatch.fleet.users import User
from fleetwatch.services import Services


def bearer_token(conn: HTTPConnection, *, allow_query: bool = False) -> str | None:
    """The bearer token of a request, or None."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        token = conn.query_params.get("token")
        if token:
            return token
    return None


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
