"""The policies page in headless Chromium against a real server with agents: a policy made
with the form, its counts moving as hosts answer (no reload), its failing hosts following a
host that flips, and a validation error on the form."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.agent import Agent
from tests.api.test_policies import checkin
from tests.server import RunningServer
from tests.ui.harness import ENROLL_SECRET

pytestmark = pytest.mark.slow
# A shared 2-core machine: waits are generous, there are no timing assertions.
expect.set_options(timeout=60_000)


@pytest.fixture
def allowed_failures() -> list[str]:
    return ["400 /api/v1/fleet/policies"]  # the form's validation error, on purpose


def test_policies_page_counts_and_failing_hosts_follow_the_answers(
    page: Page, ui_server: RunningServer
) -> None:
    page.goto(f"{ui_server.url}/ui/policies")
    expect(page.locator("#policies-state")).to_have_text("live")
    page.get_by_label("Name").fill("Bad")
    page.get_by_label("Query").fill("SELEC 1")
    page.get_by_role("button", name="Create policy").click()
    expect(page.locator("#policy-form-error")).to_contain_text("syntax error")
    with httpx.Client(base_url=ui_server.url) as agents_client:
        a, b = (Agent(agents_client, ENROLL_SECRET, f"ui-p{i}", f"ui-pu{i}") for i in range(2))
        for agent in (a, b):
            agent.enroll()
        page.get_by_label("Name").fill("Firewall on")
        page.get_by_label("Query").fill("SELECT 1 FROM alf WHERE global_state >= 1")
        page.get_by_label("Interval (s)").fill("1")
        page.get_by_role("button", name="Create policy").click()
        row = page.locator("#policies-table tbody tr", has_text="Firewall on")
        expect(row.locator(".unknown")).to_have_text("2")
        expect(page.locator("#detail-title")).to_have_text("Firewall on")
        policy_id = int(row.get_attribute("data-policy-id") or 0)
        checkin(a, {policy_id: [{"1": "1"}]})
        checkin(b, {policy_id: []})
        expect(row.locator(".passing")).to_have_text("1")
        expect(row.locator(".failing")).to_have_text("1")
        expect(page.locator("#failing-hosts li")).to_have_text(["ui-p1"])
        time.sleep(1.05)  # the policy's interval: b is asked again
        checkin(b, {policy_id: [{"1": "1"}]})
        expect(row.locator(".passing")).to_have_text("2")
        expect(page.locator("#failing-hosts li")).to_have_text(["None"])
        expect(page.locator("#detail-counts")).to_have_text("2 passing, 0 failing, 0 unknown")
