"""A real fleetwatch server on 127.0.0.1 in a background thread, for end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from fleetwatch.config import Settings
from fleetwatch.server import uvicorn_config
from fleetwatch.services import Services
from tests.services import free_port

T = TypeVar("T")


@dataclass
class RunningServer:
    """A server started by `running_server`: its URL, settings, app and services."""

    url: str
    settings: Settings
    app: FastAPI
    #: The server's event loop: use `call` to run a coroutine on it from a test.
    loop: asyncio.AbstractEventLoop

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's loop (e.g. to read its services) and return."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def running_server(settings: Settings) -> Iterator[RunningServer]:
    """Start `fleetwatch serve` for these settings (port chosen if 0) and stop it after."""
    if settings.port == 0:
        settings = settings.model_copy(update={"port": free_port()})
    config = uvicorn_config(settings.model_copy(update={"log_level": "warning"}))
    config.access_log = False
    server = uvicorn.Server(config)
    loop_box: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop_box.append(loop)
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, name="fleetwatch-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server failed to start; see the log above")
        if time.monotonic() > deadline:
            raise TimeoutError("the test server did not start within 60 s")
        time.sleep(0.02)
    scheme = "https" if settings.uses_tls else "http"
    app = config.app
    assert isinstance(app, FastAPI)
    try:
        yield RunningServer(
            url=f"{scheme}://127.0.0.1:{settings.port}",
            settings=settings,
            app=app,
            loop=loop_box[0],
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def cluster_node_settings(
    database_url: str, redis_url: str, data_dir: Path, **overrides: Any
) -> Settings:
    """One node of a test cluster (PostgreSQL + Redis): the tests' enroll secret and admin,
    fast seen-time flushes and a 1 s lease, so a failover happens within a test."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "database_url": database_url,
        "redis_url": redis_url,
        "enroll_secret": "test-enroll-secret",
        "admin_email": "admin@example.com",
        "admin_password": "admin-password-1",
        "seen_flush_interval": 0.2,
        "cluster_lease_ttl": 1.0,
    }
    return Settings(**{**values, **overrides})
