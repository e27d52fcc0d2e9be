"""One error type for the HTTP adapters, and handlers that always answer JSON.

Every error body is `{"error": "<what was wrong and what to send instead>", ...}` with a 4xx
status; osquery agents parse that body too (they ignore status codes and fail on non-JSON).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetwatch.fleet.errors import (
    AuthFailed,
    Conflict,
    FleetError,
    Forbidden,
    NotFound,
    TooMany,
)
from fleetwatch.responses import JsonResponse
from fleetwatch.storage.unreachable import is_unreachable


class ApiError(Exception):
    """An error with an HTTP status and a message that says what was wrong."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


def bad_request(message: str, **extra: Any) -> ApiError:
    return ApiError(400, message, **extra)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def describe_validation_errors(errors: Any) -> str:
    """Turn pydantic's error list into one readable sentence naming each field."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def is_out_of_range(exc: BaseException) -> bool:
    """Whether a database refused an integer parameter as too large (SQLite or PostgreSQL)."""
    text = str(exc.orig if isinstance(exc, DBAPIError) else exc)
    return "too large to convert to SQLite INTEGER" in text or "out of int64 range" in text


def database_unreachable() -> JsonResponse:
    """503 for a request that needed the database while it could not be reached: nothing
    was applied, and the same request succeeds once it is back (osquery retries by itself)."""
    return JsonResponse(
        {"error": "the server cannot reach its database right now; retry shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def fleet_error_status(exc: FleetError) -> int:
    """The HTTP status of a fleet service error."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, AuthFailed):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, TooMany):
        return 429
    return 400


def install_error_handlers(app: FastAPI) -> None:
    """Make every error a JSON body, including unexpected ones (never HTML, never empty)."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JsonResponse:
        headers = {}
        if "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
        return JsonResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(FleetError)
    async def _fleet_error(_: Request, exc: FleetError) -> JsonResponse:
        return JsonResponse({"error": str(exc)}, status_code=fleet_error_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        return JsonResponse({"error": describe_validation_errors(exc.errors())}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; see /docs for the API"
        if exc.status_code == 405:
            message = "method not allowed on this endpoint; see /docs for the API"
        return JsonResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(OverflowError)
    @app.exception_handler(DBAPIError)
    async def _out_of_range(_: Request, exc: Exception) -> JsonResponse:
        # An integer from the request (an id, a page) past what the database stores: the
        # request is wrong, not the server. Anything else is re-raised as unexpected.
        if is_unreachable(exc):
            return database_unreachable()
        if not is_out_of_range(exc):
            raise exc
        return JsonResponse(
            {"error": f"a number in the request is out of range (at most {2**63 - 1})"},
            status_code=400,
        )

    @app.exception_handler(OSError)
    @app.exception_handler(PoolTimeout)
    async def _unreachable(_: Request, exc: Exception) -> JsonResponse:
        # Answered here rather than by the catch-all below, which re-raises after replying
        # and makes the server drop the keep-alive connection (the agent's next request).
        if is_unreachable(exc):
            return database_unreachable()
        raise exc

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JsonResponse:
        if is_unreachable(exc):
            return database_unreachable()
        return JsonResponse(
            {"error": f"internal error ({type(exc).__name__}); the request was not applied"},
            status_code=500,
        )
