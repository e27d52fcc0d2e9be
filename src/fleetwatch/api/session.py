"""Login and the current session."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.requests import Request

from fleetwatch.api.auth import (
    CurrentUser,
    bearer_token,
    confirm_password,
    token_kind,
)
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.errors import AuthFailed

router = APIRouter(prefix="/api/v1/fleet", tags=["session"])


class LoginRequest(BaseModel):
    email: str = Field(max_length=255)
    password: str = Field(max_length=1024)


@router.post("/login", responses={429: {"description": "too many attempts"}})
async def login(body: LoginRequest, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Exchange email and password for a bearer token (10 attempts a minute per email and
    address; `login_address_limit` failed logins a minute per address, over all emails)."""
    address = request.client.host if request.client else ""
    wait = await services.login_limiter.check(body.email, address)
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(
            429,
            f"too many login attempts from this address or for this account; retry in {seconds} s",
            retry_after=seconds,
        )
    try:
        user = await services.users.authenticate(body.email, body.password)
    except AuthFailed:
        await services.activities.record(
            "failed_login", None, {"email": body.email, "address": address}
        )
        raise
    await services.login_limiter.reset(body.email, address)
    token = await services.users.issue_token(user.id)
    await services.activities.record("logged_in", user, {"address": address})
    return {"token": token, "user": user.to_json()}


class NewToken(BaseModel):
    name: str = Field("api", min_length=1, max_length=255)
    #: The caller's current password: required when the caller is authenticated by a login
    #: session (the cookie or its value as a bearer token), checked whenever it is given.
    password: str | None = Field(None, max_length=1024)


@router.get("/me/tokens")
async def list_tokens(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """The user's tokens (ids and names; a token itself is shown only once, at creation)."""
    return {"tokens": await services.users.list_tokens(user.id)}


@router.post("/me/tokens", status_code=201)
async def create_token(
    body: NewToken, request: Request, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """A named API token for scripts; revoke it with DELETE /me/tokens/{id}. Unlike a login
    session it does not expire when idle; a password change revokes it too.

    A caller authenticated by a login session (the kind of token /login returns and the
    browser UI's cookie holds, whether sent as the cookie or as `Authorization: Bearer`) must
    send its current `password` (400 without it, 403 when wrong): a stolen or ridden session
    cannot turn itself into a token that outlives it. A caller with an API token is not
    asked; a `password` it sends is checked."""
    if body.password is not None or token_kind(request) == "session":
        await confirm_password(
            request,
            services,
            user,
            body.password,
            field="password",
            why="to create an API token with a login session",
        )
    token = await services.users.issue_token(user.id, body.name, kind="api")
    tokens = await services.users.list_tokens(user.id)
    return {"token": token, "id": tokens[-1]["id"] if tokens else None, "name": body.name}


@router.delete("/me/tokens/{token_id}")
async def revoke_token(token_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    await services.users.revoke_token_id(user.id, token_id)
    return {}


@router.post("/logout")
async def logout(request: Request, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Revoke the token this request was made with."""
    token = bearer_token(request)
    if token:
        await services.users.revoke_token(token)
    return {}


@router.get("/me")
async def me(user: CurrentUser) -> dict[str, Any]:
    """The user the token belongs to."""
    return {"user": user.to_json()}
