"""Login and the current session."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.requests import Request

from fleetwatch.api.auth import CurrentUser, bearer_token
from fleetwatch.api.deps import ServicesDep

router = APIRouter(prefix="/api/v1/fleet", tags=["session"])


class LoginRequest(BaseModel):
    email: str = Field(max_length=255)
    password: str = Field(max_length=1024)


@router.post("/login")
async def login(body: LoginRequest, services: ServicesDep) -> dict[str, Any]:
    """Exchange email and password for a bearer token."""
    user = await services.users.authenticate(body.email, body.password)
    token = await services.users.issue_token(user.id)
    return {"token": token, "user": user.to_json()}


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
