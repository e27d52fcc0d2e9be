"""uvicorn's httptools protocol, writing a sized response in one socket write.

uvicorn writes a response's status line and headers when the app sends
`http.response.start`, and its body on `http.response.body`: two `write` system calls per
response, and on loopback each one also runs the receiving side of TCP. With 10,000 agents
long-polling, those writes were the largest single item of the server's profile. Here a
response that declares its Content-Length has its head held back and written together with
its first body chunk, which follows at once in every sized response (the lean agent path,
Starlette's `Response`). Streamed responses (no Content-Length: Server-Sent Events, chunked
downloads) and HEAD answers are written as uvicorn writes them, head first.

It also tells the app when a client goes away before its answer (`DISCONNECT`, an ASGI
scope extension): a held distributed/read is then let go at once instead of at the end of
its hold, without a task per request watching `receive`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

#: The scope extension (`scope["extensions"][DISCONNECT]`): call it with a callback to have
#: the callback called once if the client goes away before the response is complete.
DISCONNECT = "fleetwatch.disconnect"


class _HeldHead:
    """A transport that holds one write (the head) and prepends it to the next."""

    __slots__ = ("transport", "holding", "held")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.holding = False
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.holding:
            self.holding = False
            self.held = data
            return
        if self.held is not None:
            data = self.held + data
            self.held = None
        self.transport.write(data)

    def close(self) -> None:
        if self.held is not None:
            self.transport.write(self.held)
            self.held = None
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class OneWriteCycle(RequestResponseCycle):
    """A request-response cycle whose sized responses go out in one write."""

    transport: _HeldHead  # type: ignore[assignment]
    #: Called if the client goes away before the response is complete (see `DISCONNECT`).
    gone: Callable[[], None] | None = None

    def when_gone(self, callback: Callable[[], None]) -> None:
        """Call `callback` if the client goes away before the response is complete."""
        self.gone = callback

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "http.response.start"
            and not self.response_started
            and self.scope["method"] != "HEAD"
            and any(name.lower() == b"content-length" for name, _ in message.get("headers", ()))
        ):
            self.transport.holding = True
            try:
                await super().send(message)
            finally:
                # A start not written (a disconnected client) leaves nothing to hold.
                self.transport.holding = False
            return
        await super().send(message)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `OneWriteCycle` request-response cycles."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Every cycle (first, keep-alive and pipelined) starts here before its task runs.
        if type(cycle) is RequestResponseCycle:
            cycle.__class__ = OneWriteCycle
            cycle.transport = _HeldHead(cycle.transport)  # type: ignore[assignment]
        if isinstance(cycle, OneWriteCycle):
            scope: Any = cycle.scope
            scope["extensions"] = {**scope.get("extensions", {}), DISCONNECT: cycle.when_gone}
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        gone = None
        if isinstance(cycle, OneWriteCycle) and not cycle.response_complete:
            gone, cycle.gone = cycle.gone, None
        super().connection_lost(exc)
        if gone is not None:
            gone()
