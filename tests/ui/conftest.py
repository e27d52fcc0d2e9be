"""Fixtures of the browser tests: one server with 50 simulated hosts per module, Debian's
Chromium under Playwright, and a logged-in page that fails the test on any script error."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.server import RunningServer, running_server
from tests.ui.harness import ADMIN_EMAIL, ADMIN_PASSWORD, FleetThread, chromium, log_in, ui_settings

#: The simulated fleet every live query test asks.
FLEET_SIZE = 50


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real server over loopback (SQLite: the UI sees only the API, tested on both)."""
    with running_server(ui_settings(tmp_path_factory.mktemp("ui") / "data")) as server:
        yield server


@pytest.fixture(scope="module")
def fleet(ui_server: RunningServer) -> Iterator[FleetThread]:
    """FLEET_SIZE simulated osquery hosts (fleetwatch.sim), enrolled and checking in."""
    thread = FleetThread(ui_server.url, FLEET_SIZE, platforms="ubuntu=3,darwin=2,windows=1")
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one module. Not longer: while Playwright's sync API is open, its event
    loop runs on the main thread, so any later test's asyncio.run() (the PostgreSQL fixtures)
    or async test fails with "cannot be called from a running event loop" (random order)."""
    with chromium() as instance:
        yield instance


@pytest.fixture
def api_token(ui_server: RunningServer) -> str:
    reply = httpx.post(
        f"{ui_server.url}/api/v1/fleet/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    return token


@pytest.fixture
def allowed_failures() -> list[str]:
    """HTTP failures a test provokes on purpose, as "STATUS /path" prefixes."""
    return []


@pytest.fixture
def page(browser: Browser, ui_server: RunningServer, allowed_failures: list[str]) -> Iterator[Page]:
    """A fresh browser context, logged in through the form. Script errors, and API answers
    of 4xx/5xx the test did not provoke on purpose, fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    failures: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"{tab.url}: {exc}"))
    tab.on(
        "console",
        lambda msg: (
            errors.append(f"{tab.url}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on(
        "response",
        lambda response: (
            failures.append(f"{response.status} {urlsplit(response.url).path}")
            if response.status >= 400
            else None
        ),
    )
    log_in(tab, ui_server.url)
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], "script errors in the page"
    allowed = [*PROBES, *allowed_failures]
    unexpected = [f for f in failures if not any(f.startswith(a) for a in allowed)]
    assert unexpected == [], "API calls failed"


#: The pages ask whether the labels and teams APIs exist; here they do not (yet).
PROBES = ["404 /api/v1/fleet/labels", "404 /api/v1/fleet/teams"]
