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

Both need uvicorn internals that are not its public API: the protocol's
`_start_asgi_task(cycle, app)` hook (the one place a request-response cycle passes before
its task runs; touched only in `OneWriteProtocol._start_asgi_task`) and the cycle's
`transport`, `scope`, `response_started` and `response_complete` attributes.
`uvicorn_internals_problem` checks that this uvicorn still has them; `fleetwatch serve`
calls `checked_protocol` at start-up, which stops with a message saying what changed rather
than serving with a protocol that breaks on the first request. pyproject.toml pins uvicorn
to the range these were tested with.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
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
        # The one use of uvicorn's private hook (see uvicorn_internals_problem): every cycle
        # (first, keep-alive and pipelined) starts here before its task runs.
        self.adopt_cycle(cycle)
        super()._start_asgi_task(cycle, app)

    def adopt_cycle(self, cycle: RequestResponseCycle) -> None:
        """Make a cycle about to run a `OneWriteCycle` with the `DISCONNECT` extension."""
        if type(cycle) is RequestResponseCycle:
            cycle.__class__ = OneWriteCycle
            cycle.transport = _HeldHead(cycle.transport)  # type: ignore[assignment]
        if isinstance(cycle, OneWriteCycle):
            scope: Any = cycle.scope
            scope["extensions"] = {**scope.get("extensions", {}), DISCONNECT: cycle.when_gone}

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        gone = None
        if isinstance(cycle, OneWriteCycle) and not cycle.response_complete:
            gone, cycle.gone = cycle.gone, None
        super().connection_lost(exc)
        if gone is not None:
            gone()


#: The uvicorn releases this module was tested with (pyproject.toml pins the same range).
TESTED_UVICORN = ">=0.30,<0.56"
#: The private hook: (its owner, its name, the parameters after self).
_HOOK = (HttpToolsProtocol, "_start_asgi_task", ("cycle", "app"))
#: Methods that must still call the hook (the first cycle and pipelined ones).
_HOOK_CALLERS = (HttpToolsProtocol.on_headers_complete, HttpToolsProtocol.on_response_complete)
#: The cycle attributes used here, which its constructor must still set.
_CYCLE_ATTRIBUTES = ("scope", "transport", "response_started", "response_complete")


def uvicorn_internals_problem(
    protocol: type[Any] = HttpToolsProtocol, cycle: type[Any] = RequestResponseCycle
) -> str | None:
    """What this uvicorn lacks of the internals `OneWriteProtocol` needs, or None."""
    owner, name, parameters = _HOOK
    hook = getattr(protocol, name, None)
    if not callable(hook):
        return f"{owner.__name__}.{name} is gone"
    given = tuple(inspect.signature(hook).parameters)[1:]
    if given != parameters:
        return f"{owner.__name__}.{name} now takes {given}, not {parameters}"
    for caller in _HOOK_CALLERS:
        method = getattr(protocol, caller.__name__, None)
        code = getattr(method, "__code__", None)
        if code is None or name not in code.co_names:
            return f"{owner.__name__}.{caller.__name__} no longer calls {name}"
    if "cycle" not in _assigned(protocol):
        return f"{owner.__name__} no longer keeps its current cycle as .cycle"
    missing = [a for a in _CYCLE_ATTRIBUTES if a not in _assigned(cycle)]
    if missing:
        return f"RequestResponseCycle no longer sets {', '.join(missing)}"
    return None


def _assigned(cls: type[Any]) -> set[str]:
    """The attribute names a class's constructor uses (those it sets among them)."""
    code = getattr(cls.__init__, "__code__", None)
    return set(code.co_names) if code is not None else set()


def checked_protocol() -> type[OneWriteProtocol]:
    """`OneWriteProtocol`, after checking that this uvicorn still has what it needs;
    RuntimeError naming the change and the tested uvicorn range otherwise."""
    problem = uvicorn_internals_problem()
    if problem is not None:
        try:
            installed = version("uvicorn")
        except PackageNotFoundError:  # pragma: no cover - uvicorn imported above
            installed = "unknown"
        raise RuntimeError(
            f"fleetwatch's HTTP protocol uses uvicorn internals that uvicorn {installed} "
            f"changed ({problem}); install uvicorn{TESTED_UVICORN}, the tested range "
            "(pip install 'uvicorn[standard]" + TESTED_UVICORN + "')"
        )
    return OneWriteProtocol
