"""A real webhook receiver for tests: a small FastAPI app under uvicorn on a free port.

Each path `/hook/{name}` records the JSON bodies PATCHed to it; its behaviour is set per
name: `ok`, `fail` (HTTP 500), `hang` (never answers in time) or `flaky:N` (500 for the
first N attempts, then 200).
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


class Receiver:
    """The recorded deliveries and the behaviour of each hook."""

    def __init__(self) -> None:
        self.url = ""
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.attempts: dict[str, int] = {}
        self.behaviour: dict[str, str] = {}
        self.lock = threading.Lock()

    def hook(self, name: str, behaviour: str = "ok") -> str:
        """The callback URL of hook `name`, behaving as given."""
        self.behaviour[name] = behaviour
        return f"{self.url}/hook/{name}"

    def bodies(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received.get(name, []))

    def wait_for(self, name: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.bodies(name)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.bodies(name)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.patch("/hook/{name}")
        async def hook(name: str, request: Request) -> Response:
            body = await request.json()
            with self.lock:
                attempt = self.attempts.get(name, 0) + 1
                self.attempts[name] = attempt
            behaviour = self.behaviour.get(name, "ok")
            if behaviour == "hang":
                await asyncio.sleep(3600)
            if behaviour == "fail":
                return Response(status_code=500)
            if behaviour.startswith("flaky:") and attempt <= int(behaviour.split(":")[1]):
                return Response(status_code=500)
            with self.lock:
                self.received.setdefault(name, []).append(body)
            return Response(status_code=200)

        return app


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """Start a receiver on 127.0.0.1 in a thread; stop it afterwards."""
    receiver = Receiver()
    port = free_port()
    config = uvicorn.Config(receiver.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.02)
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout=10)
