"""User API bodies are JSON, whatever the client forgot to say.

`curl -d '{"query": ...}'` sends `Content-Type: application/x-www-form-urlencoded`, and a
bare client may send no Content-Type at all; FastAPI then hands the route raw bytes and the
user reads "Input should be a valid dictionary". So on the Fleet API (`/api/v1/fleet/...`),
a POST, PUT or PATCH body with either of those is taken as JSON when it parses as JSON, and
refused with a 400 saying to send JSON with `Content-Type: application/json` when it does
not; any other non-JSON Content-Type (text/plain, multipart) is a 415 saying the same.

Accepting a form-encoded body as JSON opens no cross-site door: every state-changing route
needs a bearer token or the session cookie with its CSRF header, which a cross-site form
cannot send. (The agent API and `/core`, `/docs` read their bodies themselves.)
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetwatch.responses import JsonResponse

#: Where the rule applies: the user API's FastAPI routes with JSON bodies.
PREFIX = "/api/v1/fleet/"
#: Content-Types taken as JSON when the body parses (what curl -d sends, and none at all).
LENIENT = frozenset({"", "application/x-www-form-urlencoded"})
SEND_JSON = "send a JSON body with Content-Type: application/json"


def media_type(raw: str) -> str:
    """The media type of a Content-Type header value, lowercased, without parameters."""
    return raw.split(";", 1)[0].strip().lower()


def is_json_type(media: str) -> bool:
    """Whether FastAPI parses a body of this media type as JSON (`*/json`, `*/*+json`)."""
    subtype = media.rpartition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


class JsonBodyMiddleware:
    """Takes user API bodies sent without a JSON Content-Type as JSON, or says what to send."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or not scope["path"].startswith(PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        raw = next((v for k, v in headers if k == b"content-type"), b"").decode("latin-1")
        media = media_type(raw)
        if is_json_type(media):
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive)
        if not body:
            await self.app(scope, _replay(body, more, receive), send)
            return
        if media not in LENIENT:
            message = f"Content-Type {media} is not accepted here: {SEND_JSON}"
            await JsonResponse({"error": message}, status_code=415)(scope, receive, send)
            return
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            said = f"Content-Type {media}" if media else "no Content-Type"
            message = f"the body ({said}) is not JSON ({exc}): {SEND_JSON}"
            await JsonResponse({"error": message}, status_code=400)(scope, receive, send)
            return
        headers = [(k, v) for k, v in headers if k != b"content-type"]
        headers.append((b"content-type", b"application/json"))
        await self.app({**scope, "headers": headers}, _replay(body, more, receive), send)


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The whole body (the request middleware, outside this one, has already capped its
    size), and whether the client went away before its end."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, cut: bool, receive: Receive) -> Receive:
    """A receive that gives the app the body read here, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent and not cut:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
