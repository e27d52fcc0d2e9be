"""End to end in headless Chromium against a real server and 50 simulated osquery hosts:
log in, hosts, a live query answered by every host with CSV and JSON export, a validation
error at its position, 100,000 rows kept virtual, a watch seeing changes arrive, saved
queries with form errors, the theme, re-run and compare, and a campaign's cost and truncation."""

from __future__ import annotations

import csv
import io
import json
import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.agent import Agent
from tests.server import RunningServer
from tests.ui.conftest import FLEET_SIZE
from tests.ui.harness import ENROLL_SECRET, FleetThread

pytestmark = pytest.mark.slow
# A shared 2-core machine: waits are generous, there are no timing assertions.
expect.set_options(timeout=60_000)


def api_hosts(server: RunningServer, token: str) -> list[dict[str, object]]:
    reply = httpx.get(
        f"{server.url}/api/v1/fleet/hosts?per_page=1000",
        headers={"Authorization": f"Bearer {token}"},
    )
    hosts: list[dict[str, object]] = reply.json()["hosts"]
    return hosts


def run_on_all_hosts(page: Page, server: RunningServer, sql: str) -> None:
    page.goto(f"{server.url}/ui/live")
    expect(page.locator("#target-count")).to_contain_text(f"{FLEET_SIZE} hosts targeted")
    page.locator("#sql").fill(sql)
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(re.compile(r"/ui/live\?campaign_id=\d+$"))


def test_login_is_required_and_a_wrong_password_is_said_so(
    browser: Browser, ui_server: RunningServer
) -> None:
    context = browser.new_context()
    tab = context.new_page()
    try:
        tab.goto(f"{ui_server.url}/ui/live")
        expect(tab).to_have_url(f"{ui_server.url}/ui/login?next=%2Fui%2Flive")
        tab.get_by_label("Email").fill("admin@example.com")
        tab.get_by_label("Password").fill("not-the-password")
        tab.get_by_role("button", name="Log in").click()
        expect(tab.get_by_role("alert")).to_be_visible()
        expect(tab).to_have_url(re.compile(r"/ui/login"))
        tab.get_by_label("Password").fill("admin-password-1")
        tab.get_by_label("Password").press("Enter")
        expect(tab).to_have_url(f"{ui_server.url}/ui/live")
        # The session is an HttpOnly cookie: the page's scripts cannot read it.
        assert tab.evaluate("document.cookie") == ""
        cookie = next(c for c in context.cookies() if c["name"] == "fleetwatch_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    finally:
        context.close()


def test_a_next_pointing_at_another_site_lands_on_the_ui_home(
    browser: Browser, ui_server: RunningServer
) -> None:
    context = browser.new_context()
    # Should the page leave for evil.example, this answers it: no packet leaves loopback.
    visited: list[str] = []

    def other_site(route: Route) -> None:
        visited.append(route.request.url)
        route.fulfill(status=200, body="phished", content_type="text/plain")

    context.route(re.compile(r"^https?://evil\.example"), other_site)
    tab = context.new_page()
    try:
        tab.goto(f"{ui_server.url}/ui/login?next=/%5Cevil.example/phish")
        tab.get_by_label("Email").fill("admin@example.com")
        tab.get_by_label("Password").fill("admin-password-1")
        tab.get_by_role("button", name="Log in").click()
        # The hosts page writes its sort into the query string once it has loaded.
        expect(tab).to_have_url(re.compile(rf"^{re.escape(ui_server.url)}/ui/hosts(\?[^/]*)?$"))
        assert visited == []
    finally:
        context.close()


def test_hosts_page_searches_sorts_and_pages(
    page: Page, ui_server: RunningServer, fleet: FleetThread, api_token: str
) -> None:
    hosts = api_hosts(ui_server, api_token)
    names = sorted(str(h["display_name"]) for h in hosts)
    expect(page.locator("#host-summary")).to_have_text(f"{FLEET_SIZE} hosts · {FLEET_SIZE} online")
    rows = page.locator("#hosts-table tbody tr")
    expect(rows).to_have_count(FLEET_SIZE)
    # Per page 25: two pages.
    page.get_by_label("Per page").select_option("25")
    expect(rows).to_have_count(25)
    expect(page.locator("#host-range")).to_have_text(f"1–25 of {FLEET_SIZE}")
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#host-range")).to_have_text(f"26–{FLEET_SIZE} of {FLEET_SIZE}")
    expect(page).to_have_url(re.compile(r"page=1"))
    # Sorting by hostname, descending, on the server.
    page.get_by_role("button", name="Previous").click()
    page.locator("th[data-key=hostname] button").click()
    expect(page.locator("th[data-key=hostname]")).to_have_attribute("aria-sort", "descending")
    by_hostname = sorted((str(h["hostname"]) for h in hosts), reverse=True)
    first = next(h for h in hosts if h["hostname"] == by_hostname[0])
    expect(rows.first.locator("td").nth(1)).to_have_text(str(first["display_name"]))
    # Search narrows to one host, whose page shows its inventory.
    target = hosts[7]
    page.get_by_label("Search hosts").fill(str(target["hostname"]))
    expect(rows).to_have_count(1)
    page.get_by_role("link", name=str(target["display_name"])).click()
    expect(page.locator("#host-name")).to_have_text(str(target["display_name"]))
    expect(page.locator("#about")).to_contain_text(str(target["uuid"]))
    expect(page.locator("#host-status")).to_have_text("online")
    assert str(target["display_name"]) in names


def test_live_query_across_50_hosts_shows_every_answer_and_exports(
    page: Page, ui_server: RunningServer, fleet: FleetThread, api_token: str
) -> None:
    run_on_all_hosts(page, ui_server, "SELECT hostname, cpu_brand FROM system_info")
    expect(page.locator("#campaign-badge")).to_have_text("finished")
    expect(page.locator("#stat-answered")).to_have_text(str(FLEET_SIZE))
    expect(page.locator("#stat-online")).to_have_text(str(FLEET_SIZE))
    expect(page.locator("#stat-targeted")).to_have_text(str(FLEET_SIZE))
    expect(page.locator("#stat-failed")).to_have_text("0")
    expect(page.locator("#row-count")).to_have_text(f"{FLEET_SIZE} rows")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", str(FLEET_SIZE))
    # Every host answered, each once.
    page.get_by_role("tab", name="Hosts").click()
    expect(page.locator("#host-count")).to_have_text(f"{FLEET_SIZE} answered")
    expected = sorted(str(h["hostname"]) for h in api_hosts(ui_server, api_token))

    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Export CSV").click()
    text = csv_download.value.path().read_text(encoding="utf-8")
    lines = list(csv.DictReader(io.StringIO(text)))
    assert len(lines) == FLEET_SIZE
    assert {line["status"] for line in lines} == {"complete"}
    assert sorted(line["hostname"] for line in lines) == expected
    # The row's own hostname column is what each host reported about itself.
    assert all(line["cpu_brand"] for line in lines)

    with page.expect_download() as json_download:
        page.get_by_role("button", name="Export JSON").click()
    exported = json.loads(json_download.value.path().read_text(encoding="utf-8"))
    assert exported["campaign"]["status"] == "finished"
    assert sorted(r["hostname"] for r in exported["results"]) == expected
    assert all(len(r["rows"]) == 1 for r in exported["results"])

    # The results are stored: reopening the campaign's page shows them again.
    page.reload()
    expect(page.locator("#row-count")).to_have_text(f"{FLEET_SIZE} rows")
    expect(page.locator("#stat-answered")).to_have_text(str(FLEET_SIZE))


def test_the_live_page_says_live_only_after_the_current_marker(
    page: Page, ui_server: RunningServer, fleet: FleetThread
) -> None:
    run_on_all_hosts(page, ui_server, "SELECT hostname FROM system_info")
    expect(page.locator("#campaign-badge")).to_have_text("finished")
    expect(page.locator("#stream-state")).to_have_text("live")
    # Reopen the campaign with its event stream held back: nothing has arrived, so loading.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/api/v1/fleet/campaigns/*/events*", hold)
    page.reload()
    expect(page.locator("#stream-state")).to_have_text("loading")
    for _ in range(1200):  # the route reaches this process as an event: let it arrive
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    expect(page.locator("#rows-table .vt-row")).to_have_count(0)
    held[0].continue_()
    expect(page.locator("#stream-state")).to_have_text("live")
    # The marker follows the initial results: once live, every stored answer is shown.
    assert page.locator("#row-count").text_content() == f"{FLEET_SIZE} rows"


def test_a_validation_error_is_shown_at_its_position(
    page: Page, ui_server: RunningServer, fleet: FleetThread, allowed_failures: list[str]
) -> None:
    allowed_failures.append("400 /api/v1/fleet/queries/run")
    page.goto(f"{ui_server.url}/ui/live")
    # The page sends a query only when its targets select hosts (else it says so itself): the
    # fleet must be there even when this test runs first in its module.
    expect(page.locator("#target-count")).to_contain_text(re.compile(r"\b[1-9]\d* hosts targeted"))
    editor = page.locator("#sql")
    editor.fill("SELECT *\n  FROM osquery_info\n WHER version > 1")
    editor.press("Control+Enter")
    mark = page.locator(".sql-area mark")
    expect(mark).to_have_attribute("data-line", "3")
    expect(mark).to_have_attribute("data-column", "7")
    expect(mark).to_have_text("version")
    expect(page.locator("#sql-error")).to_contain_text("line 3, column 7")
    expect(editor).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".sql-gutter span.bad")).to_have_text("3")
    expect(page.locator("#campaign")).to_be_hidden()
    # Editing clears the error.
    editor.press("End")
    editor.type(" ")
    expect(mark).to_have_count(0)


def test_100000_rows_stay_virtual(page: Page, ui_server: RunningServer, fleet: FleetThread) -> None:
    per_host = 100_000 // FLEET_SIZE
    run_on_all_hosts(
        page,
        ui_server,
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < "
        f"{per_host}) SELECT x, x * 2 AS double FROM n",
    )
    expect(page.locator("#row-count")).to_have_text("100,000 rows", timeout=180_000)
    expect(page.locator("#campaign-badge")).to_have_text("finished")
    table = page.locator("#rows-table .vt")
    assert table.get_attribute("aria-rowcount") == "100000"
    # Only the rows in view exist in the DOM, wherever the table is scrolled.
    assert page.locator("#rows-table .vt-row").count() < 100
    table.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(page.locator('#rows-table .vt-row[aria-rowindex="100000"]')).to_be_visible()
    assert page.locator("#rows-table .vt-row").count() < 100
    # Sorting and filtering work on all of them.
    page.locator("#rows-table .vt-head button", has_text="x").first.click()
    page.get_by_label("Filter rows").fill(str(per_host))
    expect(page.locator("#row-count")).to_have_text(f"{FLEET_SIZE * 2} of 100,000 rows")


def test_a_watch_shows_current_results_and_changes_arriving(
    page: Page, ui_server: RunningServer, api_token: str
) -> None:
    auth = {"Authorization": f"Bearer {api_token}"}
    existing = httpx.post(
        f"{ui_server.url}/docs/ui-notes", json={"color": "blue", "title": "before"}, headers=auth
    ).json()["documentSelfLink"]
    page.goto(f"{ui_server.url}/ui/watch")
    page.get_by_label("Document kind").fill("docs:ui-notes")
    page.get_by_label("Property").fill("color")
    page.get_by_label("Value").fill("blue")
    page.get_by_role("button", name="Start watching").click()
    expect(page.locator("#watching-state")).to_have_text("live")
    expect(page.locator("#current-table .vt-row")).to_have_count(1)
    expect(page.locator("#current-table")).to_contain_text(existing)

    added = httpx.post(
        f"{ui_server.url}/docs/ui-notes", json={"color": "blue", "title": "arrives"}, headers=auth
    ).json()["documentSelfLink"]
    change = page.locator("#changes li").first
    expect(change).to_contain_text(added)
    expect(change.locator(".badge")).to_have_text("added")
    expect(page.locator("#current-table .vt-row")).to_have_count(2)
    # Leaving the result set is a stop-match; a document of another colour never shows.
    httpx.patch(f"{ui_server.url}{added}", json={"color": "red"}, headers=auth)
    httpx.post(f"{ui_server.url}/docs/ui-notes", json={"color": "green"}, headers=auth)
    expect(page.locator("#changes li").first.locator(".badge")).to_have_text("stopMatch")
    expect(page.locator("#changes li")).to_have_count(2)
    expect(page.locator("#current-table .vt-row")).to_have_count(1)
    # The task is listed, and cancelling it closes the stream.
    link = page.locator("#watching-link").inner_text()
    row = page.locator("#tasks-table tbody tr", has_text=link.rsplit("/", 1)[1])
    expect(row).to_contain_text("started")
    page.get_by_role("button", name="Cancel task").click()
    expect(row).to_contain_text("cancelled")
    expect(page.locator("#watching-state .badge")).to_have_class(re.compile("stopped"))


def test_pasted_querytask_json_and_its_errors(
    page: Page, ui_server: RunningServer, allowed_failures: list[str]
) -> None:
    allowed_failures.append("400 /core/local-query-tasks")
    page.goto(f"{ui_server.url}/ui/watch")
    page.get_by_role("tab", name="QueryTask JSON").click()
    box = page.get_by_label("QueryTask", exact=True)
    assert json.loads(box.input_value())["querySpec"]["options"] == [
        "CONTINUOUS",
        "CONTINUOUS_STOP_MATCH",
        "EXPAND_CONTENT",
    ]
    box.fill('{"querySpec": {"query": {"occurrence": "MUST_OCCUR"}}}')
    page.get_by_role("button", name="Start watching").click()
    expect(page.locator("#watch-error")).to_contain_text("querySpec.query")
    expect(box).to_have_attribute("aria-invalid", "true")
    box.fill("{not json")
    page.get_by_role("button", name="Start watching").click()
    expect(page.locator("#watch-error")).to_contain_text("QueryTask JSON")
    box.fill(
        json.dumps(
            {
                "querySpec": {
                    "query": {"term": {"propertyName": "documentKind", "matchValue": "docs:pasted"}}
                }
            }
        )
    )
    page.get_by_role("button", name="Start watching").click()
    expect(page.locator("#watching-state")).to_have_text("live")


def test_saved_queries_create_edit_delete_with_errors_on_the_form(
    page: Page, ui_server: RunningServer, allowed_failures: list[str]
) -> None:
    allowed_failures.extend(["400 /api/v1/fleet/queries", "409 /api/v1/fleet/queries"])
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{ui_server.url}/ui/queries")
    # before its module runs, a click on Save would submit the form natively
    expect(page.locator("#query-form[data-ready=true]")).to_be_attached()
    page.get_by_label("Name").fill("Listening ports")
    page.locator("#q-sql").fill("SELECT port FROM\nlistening_ports WHERE")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#q-sql-error")).to_contain_text("line 2")
    expect(page.locator(".sql-area mark")).to_have_attribute("data-line", "2")
    page.locator("#q-sql").fill("SELECT port, address FROM listening_ports")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#queries-table tbody tr")).to_have_count(1)
    expect(page.locator("#form-title")).to_have_text("Edit “Listening ports”")
    # A second query may not take the same name: the error sits on the name field.
    page.get_by_role("button", name="New query").click()
    page.get_by_label("Name").fill("Listening ports")
    page.locator("#q-sql").fill("SELECT 1")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#q-name-error")).to_contain_text("already exists")
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    # Edit, then run it as a live query, then delete it.
    page.get_by_role("button", name="Listening ports", exact=True).click()
    page.get_by_label("Name").fill("Open ports")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#queries-table")).to_contain_text("Open ports")
    page.get_by_role("link", name="Run as live query").click()
    expect(page.locator("#sql")).to_have_value("SELECT port, address FROM listening_ports")
    page.go_back()
    page.get_by_role("button", name="Delete Open ports").click()
    expect(page.locator("#queries-table")).to_contain_text("No saved queries yet.")


def test_theme_toggle_persists_and_optional_apis_are_hidden(
    page: Page, ui_server: RunningServer
) -> None:
    page.emulate_media(color_scheme="light")
    page.get_by_role("button", name="Switch between light and dark theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(19, 20, 26)"
    # Labels and teams appear in the nav exactly when the server has their API.
    for name in ("labels", "teams"):
        present = httpx.get(f"{ui_server.url}/api/v1/fleet/{name}").status_code != 404
        link = page.get_by_role("link", name=name.title())
        expect(link).to_be_visible() if present else expect(link).to_be_hidden()
        page.goto(f"{ui_server.url}/ui/{name}")
        shown = page.locator("#resource-body" if present else "#unavailable")
        expect(shown).to_be_visible()
    # Logging out ends the session.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{ui_server.url}/ui/login")
    page.goto(f"{ui_server.url}/ui/hosts")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))


def test_a_late_answer_leaves_no_response_for_answered_late(
    page: Page, ui_server: RunningServer, api_token: str
) -> None:
    api = httpx.Client(base_url=ui_server.url, headers={"Authorization": f"Bearer {api_token}"})
    agent = Agent(httpx.Client(base_url=ui_server.url), ENROLL_SECRET, "slow-host", "slow-uuid")
    agent.enroll()
    host_id = api.get("/api/v1/fleet/hosts", params={"query": "slow-host"}).json()["hosts"][0]["id"]
    try:
        run = api.post(
            "/api/v1/fleet/queries/run",
            json={
                "query": "SELECT 1 AS one",
                "targets": [{"type": "host", "id": host_id}],
                "timeout": 0.5,
            },
        )
        campaign_id = run.json()["campaign_id"]
        page.goto(f"{ui_server.url}/ui/live?campaign_id={campaign_id}")
        expect(page.locator("#campaign-badge")).to_have_text("expired")
        page.get_by_role("tab", name="Hosts").click()
        expect(page.locator("#host-count")).to_have_text("1 no response")
        expect(page.locator("#stat-late-box")).to_be_hidden()
        # longer than the page listens to a campaign that finished or was stopped
        page.wait_for_timeout(2500)
        name = f"fleet_distributed_query_{campaign_id}"
        written = agent.post(
            "distributed/write", {"queries": {name: [{"one": "1"}]}, "statuses": {name: 0}}
        )
        assert written.json() == {}
        # the page keeps listening to an expired campaign: the answer arrives, counted late
        expect(page.locator("#host-count")).to_have_text("1 answered late")
        expect(page.locator("#stat-late")).to_have_text("1")
        expect(page.locator("#stat-pending")).to_have_text("0")
        expect(page.locator("#row-count")).to_have_text("1 rows")
    finally:
        api.delete(f"/api/v1/fleet/hosts/{host_id}")
        api.close()
        agent.client.close()


def test_rerun_the_hosts_that_did_not_answer_and_compare_two_runs(
    page: Page, ui_server: RunningServer, api_token: str
) -> None:
    api = httpx.Client(base_url=ui_server.url, headers={"Authorization": f"Bearer {api_token}"})
    agent = Agent(httpx.Client(base_url=ui_server.url), ENROLL_SECRET, "quiet-host", "quiet-uuid")
    agent.enroll()
    host_id = api.get("/api/v1/fleet/hosts", params={"query": "quiet-host"}).json()["hosts"][0][
        "id"
    ]

    def write(campaign_id: int, value: str) -> None:
        name = f"fleet_distributed_query_{campaign_id}"
        written = agent.post(
            "distributed/write", {"queries": {name: [{"a": value}]}, "statuses": {name: 0}}
        )
        assert written.json() == {}

    try:
        first = api.post(
            "/api/v1/fleet/queries/run",
            json={
                "query": "SELECT 'v' AS a",
                "targets": [{"type": "host", "id": host_id}],
                "timeout": 0.5,
            },
        ).json()["campaign_id"]
        page.goto(f"{ui_server.url}/ui/live?campaign_id={first}")
        expect(page.locator("#campaign-badge")).to_have_text("expired")
        expect(page.locator("#campaign-origin")).to_be_hidden()
        page.get_by_role("button", name="Re-run on the 1 that did not answer").click()
        expect(page).to_have_url(re.compile(rf"/ui/live\?campaign_id=(?!{first}$)\d+$"))
        second = int(page.url.rsplit("=", 1)[1])
        expect(page.locator("#campaign-origin")).to_have_text(f"Re-run of campaign {first}")
        expect(page.locator("#stat-targeted")).to_have_text("1")
        assert api.get(f"/api/v1/fleet/campaigns/{second}").json()["campaign"]["rerun_of"] == first
        write(second, "2")
        expect(page.locator("#campaign-badge")).to_have_text("finished")
        expect(page.locator("#stat-answered")).to_have_text("1")
        expect(page.locator("#rerun")).to_be_hidden()  # every target answered
        write(first, "1")  # late, to the expired first run: now both have rows

        page.get_by_role("button", name="Compare with a previous run").click()
        expect(page.locator("#compare-with")).to_have_value(str(first))
        page.get_by_role("button", name="Compare", exact=True).click()
        expect(page.locator("#compare-summary")).to_have_text(
            f"1 hosts answered differently · 0 answered only this run · "
            f"0 answered only campaign {first}"
        )
        rows = page.locator("#diff-table tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("quiet-host")
        expect(rows.nth(0)).to_contain_text('+ added{"a":"2"}')
        expect(rows.nth(1)).to_contain_text('− removed{"a":"1"}')
    finally:
        api.delete(f"/api/v1/fleet/hosts/{host_id}")
        api.close()
        agent.client.close()


def test_the_live_page_shows_the_campaigns_cost_and_why_it_was_truncated(
    page: Page, ui_server: RunningServer, api_token: str
) -> None:
    api = httpx.Client(base_url=ui_server.url, headers={"Authorization": f"Bearer {api_token}"})
    agent = Agent(httpx.Client(base_url=ui_server.url), ENROLL_SECRET, "costly-host", "costly-uuid")
    agent.enroll()
    host_id = api.get("/api/v1/fleet/hosts", params={"query": "costly-host"}).json()["hosts"][0][
        "id"
    ]
    try:
        campaign_id = api.post(
            "/api/v1/fleet/queries/run",
            json={
                "query": "SELECT pid FROM processes",
                "targets": [{"type": "host", "id": host_id}],
                "max_rows": 2,
            },
        ).json()["campaign_id"]
        page.goto(f"{ui_server.url}/ui/live?campaign_id={campaign_id}")
        expect(page.locator("#campaign-badge")).to_have_text("running")
        expect(page.locator("#cost")).to_be_hidden()  # no answer yet: nothing to measure
        expect(page.locator("#truncated")).to_be_hidden()
        name = f"fleet_distributed_query_{campaign_id}"
        written = agent.post(
            "distributed/write",
            {
                "queries": {name: [{"pid": "1"}, {"pid": "2"}, {"pid": "3"}]},
                "statuses": {name: 0},
                "stats": {name: {"wall_time_ms": 40, "memory": 2048}},
            },
        )
        assert written.json() == {}
        expect(page.locator("#campaign-badge")).to_have_text("finished")
        cost = page.get_by_role("group", name="Cost over the answers")
        expect(cost).to_be_visible()
        expect(page.locator("#cost-wall")).to_have_text("40 ms · 40 ms · 40 ms")
        expect(page.locator("#cost-memory")).to_have_text("2.0 KiB · 2.0 KiB · 2.0 KiB")
        expect(page.locator("#truncated")).to_have_text(
            "Truncated: the campaign's row limit (max_rows) (2) was reached. No host was asked "
            "after that; later answers were counted but their rows not stored."
        )
        expect(page.locator("#row-count")).to_have_text("2 rows")
        # reopened, the stored campaign says the same
        page.reload()
        expect(page.locator("#cost-wall")).to_have_text("40 ms · 40 ms · 40 ms")
        expect(page.locator("#truncated")).to_contain_text("max_rows")
    finally:
        api.delete(f"/api/v1/fleet/hosts/{host_id}")
        api.close()
        agent.client.close()
