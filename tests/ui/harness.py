"""What the browser tests and the screenshot script share: a server with a simulated fleet,
Debian's Chromium driven by Playwright, and logging in through the UI's own form."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from fleetwatch.config import Settings
from fleetwatch.sim import AgentFlags, Fleet

#: Debian's chromium package; Playwright never downloads a browser here.
CHROMIUM = os.environ.get("FLEETWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-1"
ENROLL_SECRET = "ui-enroll-secret"


def ui_settings(data_dir: Path) -> Settings:
    """A server on SQLite in `data_dir` with an admin and an enroll secret."""
    return Settings(
        host="127.0.0.1",
        port=0,
        data_dir=data_dir,
        enroll_secret=ENROLL_SECRET,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        distributed_hold=1.0,
        seen_flush_interval=0.2,
        sse_keepalive=2.0,
    )


class FleetThread:
    """A simulated fleet (fleetwatch.sim) on its own event loop in a background thread."""

    def __init__(self, url: str, hosts: int, *, seed: int = 7, platforms: str | None = None):
        self.url = url
        self.count = hosts
        self.seed = seed
        self.platforms = platforms
        self.fleet: Fleet | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="ui-sim-fleet", daemon=True)

    def start(self, timeout: float = 120.0) -> FleetThread:
        """Start the hosts and wait until each has enrolled and loaded its config."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self.count} simulated hosts did not enroll in {timeout:g} s")
        if self._error is not None:
            raise RuntimeError("the simulated fleet failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        fleet = Fleet(
            self.url,
            ENROLL_SECRET,
            self.count,
            seed=self.seed,
            platforms=self.platforms,
            flags=AgentFlags(distributed_interval=1.0, logger_tls_period=2.0),
        )
        self.fleet = fleet
        try:
            await fleet.start()
            await fleet.wait_enrolled(timeout=90)
            await fleet.wait_configured(timeout=90)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await fleet.stop()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await fleet.stop()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium under Playwright."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/install --dev installs chromium")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def log_in(page: Page, base_url: str, next_path: str = "/ui/hosts") -> None:
    """Sign in through the login form and land on `next_path`."""
    page.goto(f"{base_url}{next_path}")
    page.wait_for_url("**/ui/login**")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")
