"""The browser fixtures (tests/ui/conftest.py) leave the session as they found it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_browser_module_leaves_no_event_loop_running_for_the_modules_after_it() -> None:
    # Playwright's sync API runs its event loop on the main thread while it is open: a browser
    # kept for the session made every later asyncio.run() (creating a PostgreSQL database)
    # and async test fail, so random order broke whatever ran after a UI module.
    browser_test = "tests/ui/test_pages.py::test_login_is_required_and_a_wrong_password_is_said_so"
    after = "tests/query/test_listing.py::test_kind_in_link_order_without_deleted"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", browser_test, after],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "3 passed" in run.stdout, run.stdout[-2000:]
