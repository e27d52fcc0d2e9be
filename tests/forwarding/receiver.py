"""A real HTTP log receiver for tests: records the JSON bodies POSTed to `/logs/{name}`.

Behaviour per name: `ok`, `fail` (HTTP 503), `flaky:N` (503 for the first N attempts) or
`hang` (never answers in time).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

from tests.services import free_port


class LogReceiver:
    """Recorded batches and per-name behaviour."""

    def __init__(self) -> None:
        self.url = ""
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self.attempts: dict[str, int] = {}
        self.behaviour: dict[str, str] = {}
        self.lock = threading.Lock()

    def endpoint(self, name: str, behaviour: str = "ok") -> str:
        self.behaviour[name] = behaviour
        return f"{self.url}/logs/{name}"

    def received(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.batches.get(name, []))

    def wait_lines(self, name: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The lines received so far, once at least `count` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for batch in self.received(name) for line in batch["data"]]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/logs/{name}")
        async def logs(name: str, request: Request) -> Response:
            body = await request.json()
            with self.lock:
                attempt = self.attempts[name] = self.attempts.get(name, 0) + 1
            behaviour = self.behaviour.get(name, "ok")
            if behaviour == "hang":
                await asyncio.sleep(3600)
            if behaviour == "fail" or (
                behaviour.startswith("flaky:") and attempt <= int(behaviour.split(":")[1])
            ):
                return Response(status_code=503)
            with self.lock:
                self.batches.setdefault(name, []).append(body)
            return Response(status_code=204)

        return app


@contextmanager
def running_log_receiver() -> Iterator[LogReceiver]:
    """Start a receiver on 127.0.0.1 in a thread; stop it afterwards."""
    receiver = LogReceiver()
    port = free_port()
    config = uvicorn.Config(receiver.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="log-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the log receiver did not start")
        time.sleep(0.02)
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        server.force_exit = True  # a hanging handler must not hold the shutdown
        thread.join(timeout=10)
