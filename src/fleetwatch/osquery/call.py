"""One agent call as the endpoint handlers see it: the request, and their reply.

Framework-free on purpose: the agent endpoints are most of a server's requests, and the
lean path (osquery/lean_app.py) serves them straight from ASGI without a Starlette
`Request` or `Response` per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope

from fleetwatch.http_protocol import DISCONNECT
from fleetwatch.osquery.body import BodyError, Headers, header_in, parse_json_object, read_raw
from fleetwatch.services import Services


class AgentRequest:
    """An agent's request: its ASGI scope and receive channel, and the server's services."""

    __slots__ = ("scope", "receive", "services", "body")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        services: Services,
        body: bytes | BodyError | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.services = services
        #: The body already read (fleetwatch.osquery.protocol reads it before the handler
        #: runs), or why it cannot be used; None: read it from `receive`.
        self.body = body

    @property
    def headers(self) -> Headers:
        headers: Headers = self.scope["headers"]
        return headers

    def header(self, name: bytes) -> str | None:
        """One header by its lower-case name, or None."""
        return header_in(self.scope["headers"], name)

    @property
    def client_host(self) -> str:
        """The client's address (the proxy's client when proxy headers are trusted)."""
        client = self.scope.get("client")
        return str(client[0]) if client else ""

    def when_gone(self, callback: Callable[[], None]) -> None:
        """Have `callback` called if the agent goes away before it is answered (served by
        fleetwatch's HTTP protocol; under another server, never)."""
        extensions = self.scope.get("extensions")
        register = extensions.get(DISCONNECT) if extensions else None
        if register is not None:
            register(callback)

    async def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, bounded by --max-body-bytes (BodyError if not)."""
        body = self.body
        if body is None:
            limit = self.services.settings.max_body_bytes
            body = await read_raw(self.scope["headers"], self.receive, limit)
        elif isinstance(body, BodyError):
            raise body
        return parse_json_object(body)


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply to an agent: status, the JSON body already serialized, extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def reply(payload: Any, status: int = 200, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Reply:
    """A JSON reply (rendered as `JsonResponse` renders it)."""
    return Reply(status, orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), headers)
