"""The OpenAPI description served at /openapi.json (and rendered at /docs).

FastAPI derives paths, parameters and request models from the routes; this module adds
what it cannot know, once, when the description is first asked for:

- the error body (`{"error": "..."}`) as the `4XX`/`5XX` responses of every operation, and
  400 in place of FastAPI's 422 (the server answers validation errors with 400);
- the security schemes: bearer tokens for the user API (`/api/v1/fleet`, `/core`, `/docs`,
  `/metrics`), node keys for the agent API (in the body as osquery sends it, or the
  `Authorization: NodeKey` header);
- JSON object request bodies for the routes that read their body themselves (the agent API,
  QueryTasks, user documents), which FastAPI sees as body-less;
- tag descriptions, so /docs groups operations by what they are for.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

DESCRIPTION = """Live and continuous queries for an osquery fleet.

* **Agent API** (`/api/v1/osquery/...`): osquery's TLS remote API. Every reply is JSON.
* **User API** (`/api/v1/fleet/...`): `Authorization: Bearer <token>` from
  `POST /api/v1/fleet/login`.
* **Continuous queries** (`/core/...`) and **documents** (`/docs/...`): Xenon's QueryTask API
  and user documents in the index.

An error is always `{"error": "<what was wrong and what to send instead>"}` with a 4xx status.
"""

TAGS: list[dict[str, str]] = [
    {
        "name": "osquery agent API",
        "description": "What osquery agents call (enroll, config, "
        "logs, distributed queries). Authenticated by node key.",
    },
    {"name": "session", "description": "Login, logout, the current user and API tokens."},
    {"name": "users", "description": "User accounts and roles (admin)."},
    {"name": "hosts", "description": "Enrolled hosts, their inventory and stored logs."},
    {"name": "enroll secrets", "description": "Global enroll secrets (admin)."},
    {"name": "agent config", "description": "The osquery configuration served to agents."},
    {"name": "live queries", "description": "Live query campaigns: run SQL on the fleet now."},
    {"name": "saved queries", "description": "Named queries."},
    {"name": "labels", "description": "Dynamic (query) and manual labels."},
    {"name": "teams", "description": "Teams, their hosts and enroll secrets."},
    {"name": "policies", "description": "Yes/no questions every host answers, and their events."},
    {
        "name": "destinations",
        "description": "Where campaign results are forwarded (a SIEM, a log pipeline).",
    },
    {"name": "activities", "description": "The audit feed."},
    {"name": "query tasks", "description": "Continuous and one-shot QueryTasks (Xenon)."},
    {"name": "documents", "description": "User documents stored in the index."},
    {"name": "operations", "description": "Health and Prometheus metrics."},
]

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "What was wrong and what to send instead."}
    },
    "required": ["error"],
    "additionalProperties": True,
}

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_STRING = {"type": "string"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


#: Prefixes of the paths that need a bearer token (login is the exception).
BEARER_PREFIXES = ("/api/v1/fleet", "/core/", "/docs/", "/metrics")
UNAUTHENTICATED = {"/api/v1/fleet/login"}
AGENT_PREFIX = "/api/v1/osquery/"
#: Operations whose JSON body the route reads itself: (method, path prefix).
RAW_JSON_BODIES = (
    ("post", AGENT_PREFIX),
    ("post", "/core/"),
    ("patch", "/core/"),
    ("post", "/docs/"),
    ("put", "/docs/"),
    ("patch", "/docs/"),
)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The complete description of `app` (see the module docstring)."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=DESCRIPTION,
        routes=app.routes,
        tags=TAGS,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from POST /api/v1/fleet/login or /api/v1/fleet/me/tokens.",
        },
        "nodeKey": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`NodeKey <key>`; osquery itself sends `node_key` in the body.",
        },
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _describe_operation(path, method, operation)
    return schema


def _describe_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if responses.pop("422", None) is not None:
        responses["400"] = _error_response("The request is invalid; `error` names the field.")
    responses.setdefault("4XX", _error_response("The request was refused; `error` says why."))
    responses.setdefault("5XX", _error_response("Internal error; the request was not applied."))
    for status, response in responses.items():
        content = response.get("content", {})
        # The routes answer with fleetwatch's orjson JsonResponse, which FastAPI does not
        # know for JSON and describes as a string: every JSON answer is an object.
        if status.startswith("2") and content.get("application/json") == {"schema": _STRING}:
            content["application/json"] = {"schema": {"type": "object"}}
    if path.endswith("/events"):
        responses["200"] = {
            "description": "Server-Sent Events: `id:` a cursor, `data:` one JSON message.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    if path.startswith(AGENT_PREFIX):
        operation["security"] = [{"nodeKey": []}, {}]
    elif path.startswith(BEARER_PREFIXES) and path not in UNAUTHENTICATED:
        operation["security"] = [{"bearer": []}]
    if "requestBody" not in operation and any(
        method == m and path.startswith(p) for m, p in RAW_JSON_BODIES
    ):
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi(app)` at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
