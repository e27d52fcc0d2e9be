"""Screenshots of every page, for docs/screenshots/ and the README.

    python -m tests.ui.screenshots [--out docs/screenshots] [--hosts 24]

Starts a server on SQLite in a temporary directory with a simulated fleet, drives Debian's
Chromium through the pages as a user would (a live query, a validation error, a watch seeing
changes, saved queries) and writes one PNG per page, plus the live query page in dark.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.server import running_server
from tests.ui.harness import ADMIN_EMAIL, ADMIN_PASSWORD, FleetThread, chromium, log_in, ui_settings

LIVE_SQL = (
    "SELECT name, pid, resident_size / 1048576 AS rss_mib\n"
    "  FROM processes\n"
    " ORDER BY resident_size DESC\n"
    " LIMIT 3;"
)
SAVED = [
    (
        "Listening ports",
        "Every open port and the process behind it.",
        "SELECT pid, port, protocol, address FROM listening_ports;",
    ),
    (
        "Logged-in users",
        "Who is on each machine right now.",
        "SELECT user, host, time FROM logged_in_users;",
    ),
    (
        "osquery version",
        "Agents by version, to plan upgrades.",
        "SELECT version, build_platform FROM osquery_info;",
    ),
]


def shoot(page: Page, out: Path, name: str) -> None:
    page.wait_for_timeout(400)  # let transitions and the last frame settle
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"wrote {out / f'{name}.png'}")


def run(out: Path, hosts: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=60_000)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(ui_settings(Path(tmp) / "data")) as server,
    ):
        fleet = FleetThread(server.url, hosts, seed=11, platforms="ubuntu=3,darwin=2,windows=2")
        fleet.start()
        try:
            token = httpx.post(
                f"{server.url}/api/v1/fleet/login",
                json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            ).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            for name, description, sql in SAVED:
                httpx.post(
                    f"{server.url}/api/v1/fleet/queries",
                    json={
                        "name": name,
                        "description": description,
                        "query": sql,
                        "observer_can_run": True,
                    },
                    headers=auth,
                )
            time.sleep(2)  # a few check-ins, so "last seen" reads naturally
            with chromium() as browser:
                context = browser.new_context(
                    viewport={"width": 1360, "height": 860}, color_scheme="light"
                )
                page = context.new_page()
                page.goto(f"{server.url}/ui/login")
                shoot(page, out, "login")
                log_in(page, server.url)
                expect(page.locator("#hosts-table tbody tr")).to_have_count(hosts)
                shoot(page, out, "hosts")

                page.locator("#hosts-table tbody tr a").nth(2).click()
                expect(page.locator("#inventory dt").first).to_be_visible()
                shoot(page, out, "host")

                page.goto(f"{server.url}/ui/live")
                expect(page.locator("#target-count")).to_contain_text(f"{hosts} hosts targeted")
                page.locator("#sql").fill("SELECT name, pid\n  FROM processes\n WHER pid > 1")
                page.locator("#sql").press("Control+Enter")
                expect(page.locator(".sql-area mark")).to_be_visible()
                shoot(page, out, "live-query-error")

                page.locator("#sql").fill(LIVE_SQL)
                page.locator("#sql").press("Control+Enter")
                expect(page.locator("#campaign-badge")).to_have_text("finished")
                expect(page.locator("#stat-answered")).to_have_text(str(hosts))
                page.locator("#rows-table .vt-head button", has_text="rss_mib").click()
                page.locator("#rows-table .vt-head button", has_text="rss_mib").click()
                shoot(page, out, "live-query")
                page.get_by_role("tab", name="Hosts").click()
                shoot(page, out, "live-query-hosts")
                page.emulate_media(color_scheme="dark")
                page.get_by_role("tab", name="Rows").click()
                shoot(page, out, "live-query-dark")
                page.emulate_media(color_scheme="light")

                page.goto(f"{server.url}/ui/watch")
                page.get_by_label("Document kind").fill("docs:incidents")
                page.get_by_label("Property").fill("severity")
                page.get_by_label("Value").fill("high")
                httpx.post(
                    f"{server.url}/docs/incidents",
                    json={"severity": "high", "title": "disk full on cache-01"},
                    headers=auth,
                )
                page.get_by_role("button", name="Start watching").click()
                expect(page.locator("#watching-state")).to_have_text("live")
                second = httpx.post(
                    f"{server.url}/docs/incidents",
                    json={"severity": "high", "title": "certificate expires in 2 days"},
                    headers=auth,
                ).json()["documentSelfLink"]
                httpx.post(
                    f"{server.url}/docs/incidents",
                    json={"severity": "high", "title": "sshd restarted"},
                    headers=auth,
                )
                httpx.patch(f"{server.url}{second}", json={"severity": "low"}, headers=auth)
                expect(page.locator("#changes li")).to_have_count(3)
                shoot(page, out, "watch")

                if httpx.get(f"{server.url}/api/v1/fleet/labels", headers=auth).status_code == 200:
                    label = {
                        "name": "Ubuntu servers",
                        "description": "Linux hosts running Ubuntu",
                        "query": "SELECT 1 FROM os_version WHERE name LIKE 'Ubuntu%'",
                    }
                    httpx.post(f"{server.url}/api/v1/fleet/labels", json=label, headers=auth)
                    page.goto(f"{server.url}/ui/labels")
                    expect(page.locator("#items-table")).to_contain_text("Ubuntu servers")
                    shoot(page, out, "labels")

                page.goto(f"{server.url}/ui/queries")
                page.get_by_role("button", name="Listening ports", exact=True).click()
                shoot(page, out, "saved-queries")
                context.close()
        finally:
            fleet.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--hosts", type=int, default=24)
    args = parser.parse_args()
    run(args.out, args.hosts)


if __name__ == "__main__":
    main()
