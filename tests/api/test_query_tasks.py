"""One-shot query tasks over HTTP on both backends: options, paging, lifecycle, bad input."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.index import Action, Write
from fleetwatch.storage import sqlite_functions
from fleetwatch.storage.sqlite_functions import ascii_words
from tests.agent import Agent
from tests.conftest import login
from tests.query.task_client import (
    TASKS,
    TaskClient,
    kind_query,
    query,
    task_body,
    term,
    user_client,
)
from tests.server import RunningServer, running_server


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    for i in range(7):
        client.doc(
            "POST",
            "/docs/hosts",
            {
                "documentSelfLink": f"h{i}",
                "name": f"host-{i}",
                "mem": 10 * (7 - i),
                "os": "darwin" if i % 2 else "linux",
            },
        )
    yield client
    client.close()


def test_direct_task_answers_with_results(tasks: TaskClient) -> None:
    reply = tasks.http.post(
        TASKS, json=task_body(kind_query("docs:hosts", os="darwin"), "EXPAND_CONTENT", direct=True)
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["taskInfo"]["stage"] == "FINISHED" and body["taskInfo"]["isDirect"] is True
    assert body["results"]["documentLinks"] == [
        "/docs/hosts/h1",
        "/docs/hosts/h3",
        "/docs/hosts/h5",
    ]
    assert body["results"]["documents"]["/docs/hosts/h3"]["name"] == "host-3"
    assert body["results"]["documentCount"] == 3
    # a direct task is not kept
    assert body["documentSelfLink"] not in tasks.get(TASKS)["documentLinks"]


def test_async_task_is_stored_and_listed(tasks: TaskClient) -> None:
    reply = tasks.http.post(TASKS, json=task_body(kind_query("docs:hosts"), link="all-hosts"))
    assert reply.status_code == 202
    link = reply.json()["documentSelfLink"]
    assert link == f"{TASKS}/all-hosts"
    got = tasks.get(link)
    assert got["taskInfo"]["stage"] == "FINISHED"
    assert len(got["results"]["documentLinks"]) == 7 and "documents" not in got["results"]
    assert got["querySpec"]["query"]["booleanClauses"][0]["term"]["matchValue"] == "docs:hosts"
    assert tasks.get(TASKS)["documentLinks"] == [link]
    duplicate = tasks.http.post(TASKS, json=task_body(kind_query("docs:hosts"), link="all-hosts"))
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["error"]
    # the other factory is separate, with the same behaviour
    other = tasks.http.post("/core/query-tasks", json=task_body(kind_query("docs:hosts")))
    assert other.status_code == 202
    assert other.json()["documentSelfLink"].startswith("/core/query-tasks/")
    assert tasks.get("/core/query-tasks")["documentLinks"] == [other.json()["documentSelfLink"]]
    assert tasks.get(TASKS)["documentLinks"] == [link]
    deleted = tasks.http.delete(link)
    assert deleted.status_code == 200
    assert tasks.http.get(link).status_code == 404
    assert tasks.get(TASKS)["documentLinks"] == []


def test_count_sort_top_results_include_deleted(tasks: TaskClient) -> None:
    count = tasks.create(task_body(kind_query("docs:hosts"), "COUNT", direct=True))
    assert count["results"]["documentCount"] == 7 and count["results"]["documentLinks"] == []

    sort: dict[str, Any] = {
        "sortTerm": {"propertyName": "mem", "propertyType": "LONG"},
        "sortOrder": "ASC",
    }
    ordered = tasks.create(task_body(kind_query("docs:hosts"), "SORT", direct=True, **sort))
    assert ordered["results"]["documentLinks"] == [f"/docs/hosts/h{i}" for i in range(6, -1, -1)]
    top = tasks.create(
        task_body(
            kind_query("docs:hosts"),
            "SORT",
            "TOP_RESULTS",
            "EXPAND_CONTENT",
            direct=True,
            resultLimit=2,
            **{**sort, "sortOrder": "DESC"},
        )
    )
    assert top["results"]["documentLinks"] == ["/docs/hosts/h0", "/docs/hosts/h1"]
    assert "nextPageLink" not in top["results"]
    assert top["results"]["documents"]["/docs/hosts/h0"]["mem"] == 70

    tasks.doc("DELETE", "/docs/hosts/h0")
    live = tasks.create(task_body(kind_query("docs:hosts"), direct=True))
    assert "/docs/hosts/h0" not in live["results"]["documentLinks"]
    everything = tasks.create(
        task_body(kind_query("docs:hosts"), "INCLUDE_DELETED", "EXPAND_CONTENT", direct=True)
    )
    assert everything["results"]["documents"]["/docs/hosts/h0"]["documentUpdateAction"] == "DELETE"

    ranged = tasks.create(
        task_body(
            query(
                term("documentKind", "docs:hosts"),
                {
                    "term": {
                        "propertyName": "mem",
                        "range": {
                            "type": "LONG",
                            "min": 20,
                            "max": 40,
                            "isMinInclusive": True,
                            "isMaxInclusive": False,
                        },
                    }
                },
                term("name", "host-*", match="WILDCARD"),
            ),
            direct=True,
        )
    )
    assert ranged["results"]["documentLinks"] == ["/docs/hosts/h4", "/docs/hosts/h5"]


def test_result_limit_pages_are_stable(tasks: TaskClient) -> None:
    sort: dict[str, Any] = {
        "sortTerm": {"propertyName": "name", "propertyType": "STRING"},
        "sortOrder": "ASC",
    }
    task = tasks.create(
        task_body(kind_query("docs:hosts"), "SORT", "EXPAND_CONTENT", resultLimit=3, **sort)
    )
    results = task["results"]
    assert results["documentLinks"] == [] and results["documentCount"] == 7
    first = results["nextPageLink"]
    assert first.startswith("/core/query-page/")
    # writes after the snapshot neither shift nor repeat entries between pages
    tasks.doc("POST", "/docs/hosts", {"documentSelfLink": "a-new", "name": "host-0a"})
    tasks.doc("DELETE", "/docs/hosts/h5")
    seen: list[str] = []
    link: str | None = first
    pages = []
    while link is not None:
        page = tasks.get(link)
        pages.append(page)
        seen.extend(page["results"]["documentLinks"])
        link = page["results"].get("nextPageLink")
    assert seen == [f"/docs/hosts/h{i}" for i in range(7)]
    assert [len(p["results"]["documentLinks"]) for p in pages] == [3, 3, 1]
    assert "prevPageLink" not in pages[0]["results"]
    back = tasks.get(pages[1]["results"]["prevPageLink"])
    assert back["results"]["documentLinks"] == pages[0]["results"]["documentLinks"]
    # documents show their current state (h5 was deleted after the snapshot)
    assert pages[1]["results"]["documents"]["/docs/hosts/h5"]["documentUpdateAction"] == "DELETE"
    forward = tasks.create(task_body(kind_query("docs:hosts"), "FORWARD_ONLY", resultLimit=4))
    second = tasks.get(tasks.get(forward["results"]["nextPageLink"])["results"]["nextPageLink"])
    assert "prevPageLink" not in second["results"]
    missing = tasks.http.get("/core/query-page/nope-0")
    assert missing.status_code == 404 and "no query page" in missing.json()["error"]
    # deleting the task drops its pages
    tasks.http.delete(task["documentSelfLink"])
    assert tasks.http.get(first).status_code == 404


def test_patch_cancel_and_expiry(tasks: TaskClient) -> None:
    task = tasks.create(task_body(kind_query("docs:hosts"), "CONTINUOUS", link="c1"))
    link = task["documentSelfLink"]
    bad = [
        tasks.http.patch(link, json={"taskInfo": {"stage": "STARTED"}}),
        tasks.http.patch(link, json={"taskInfo": {"stage": "SOMEDAY"}}),
        tasks.http.patch(link, json={"querySpec": {"query": kind_query("docs:x")}}),
        tasks.http.patch(link, json={"documentExpirationTimeMicros": "later"}),
        tasks.http.patch(link, json={"results": {}}),
        tasks.http.patch(link, json=[1]),
        tasks.http.patch(f"{TASKS}/missing", json={"taskInfo": {"stage": "CANCELLED"}}),
    ]
    assert [r.status_code for r in bad] == [400, 400, 400, 400, 400, 400, 404]
    assert all(r.json()["error"] for r in bad)
    later = task["documentUpdateTimeMicros"] + 7 * 24 * 3600 * 1_000_000
    moved = tasks.http.patch(link, json={"documentExpirationTimeMicros": later})
    assert moved.json()["documentExpirationTimeMicros"] == later
    assert moved.json()["taskInfo"]["stage"] == "STARTED"
    stopped = tasks.http.patch(link, json={"taskInfo": {"stage": "CANCELLED"}})
    assert stopped.json()["taskInfo"]["stage"] == "CANCELLED"
    assert tasks.stats()["activeQueryFilterCount"] == 0


def test_malformed_specs_get_400_naming_the_field(tasks: TaskClient) -> None:
    def bomb(depth: int) -> dict[str, object]:
        node: dict[str, object] = term("a", "b")
        for _ in range(depth):
            node = {"occurance": "MUST_OCCUR", "booleanClauses": [node]}
        return node

    wide = query(*[term("a", str(i)) for i in range(5000)])
    cases: dict[str, dict[str, Any] | None] = {
        "both": task_body(
            {"term": {"propertyName": "a", "matchValue": "b"}, "booleanClauses": [term("a", "b")]}
        ),
        "range": task_body({"term": {"propertyName": "n", "range": {"type": "LONG"}}}),
        "option": task_body(kind_query("k"), "NOT_AN_OPTION"),
        "direct": task_body(kind_query("k"), "CONTINUOUS", direct=True),
        "deep": task_body(bomb(200)),
        "wide": task_body(wide),
        "no query": {"querySpec": {"options": []}},
        "not json": None,
    }
    for name, body in cases.items():
        if body is None:
            reply = tasks.http.post(TASKS, content=b"{nope")
        else:
            reply = tasks.http.post(TASKS, json=body)
        assert reply.status_code == 400, (name, reply.text)
        assert reply.json()["error"], name
    assert "mutually exclusive" in tasks.http.post(TASKS, json=cases["both"]).json()["error"]
    assert "isDirect" in tasks.http.post(TASKS, json=cases["direct"]).json()["error"]
    assert "NOT_AN_OPTION" in tasks.http.post(TASKS, json=cases["option"]).json()["error"]
    bad_link = tasks.http.post(TASKS, json=task_body(kind_query("k"), link="/elsewhere/x"))
    assert bad_link.status_code == 400 and "documentSelfLink" in bad_link.json()["error"]
    huge = tasks.http.post(TASKS, content=b" " * (2 * 1024 * 1024))
    assert huge.status_code == 413
    assert tasks.stats()["tasks"] == 0


def test_routes_need_a_token(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url) as anonymous:
        for method, path in [
            ("POST", TASKS),
            ("GET", TASKS),
            ("GET", f"{TASKS}/x"),
            ("GET", f"{TASKS}/x/events"),
            ("GET", "/core/document-index/stats"),
        ]:
            reply = anonymous.request(method, path, json={})
            assert reply.status_code == 401, (method, path)
            assert "Bearer" in reply.json()["error"]


HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    """HOOK is on loopback, which webhooks may call only when allowed."""
    return server_settings.model_copy(update={"outbound_allow": "127.0.0.0/8"})


def test_only_the_owner_or_an_admin_may_read_or_change_a_task(tasks: TaskClient) -> None:
    """A task is private like a campaign: its owner and global admins; others get 404."""
    observer, _ = user_client(tasks, "observer@example.com", "observer")
    maintainer, _ = user_client(tasks, "maintainer@example.com", "maintainer")
    other_admin, _ = user_client(tasks, "admin2@example.com", "admin")
    admins = tasks.create(task_body(kind_query("docs:hosts"), "CONTINUOUS", link="admins"))
    link = admins["documentSelfLink"]
    for client in (observer, maintainer):
        for method, path, body in (
            ("GET", link, None),
            ("PATCH", link, {"taskInfo": {"stage": "CANCELLED"}}),
            ("PATCH", link, {"documentExpirationTimeMicros": 1}),
            ("DELETE", link, None),
            ("POST", f"{link}/subscriptions", {"reference": HOOK}),
            ("GET", f"{link}/subscriptions", None),
            ("DELETE", f"{link}/subscriptions", {"reference": HOOK}),
            ("GET", f"{link}/events", None),
        ):
            reply = client.http.request(method, path, json=body)
            assert reply.status_code == 404, (method, path, reply.text)
            assert "no query task" in reply.json()["error"]
        with client.websocket(link) as ws:
            error = ws.next()
            assert error["type"] == "error" and "no query task" in error["error"]
        assert link not in client.get(TASKS)["documentLinks"]
    # untouched: still running, no webhook, same expiry
    state = tasks.get(link)
    assert state["taskInfo"]["stage"] == "STARTED"
    assert state["documentExpirationTimeMicros"] == admins["documentExpirationTimeMicros"]
    assert tasks.get(f"{link}/subscriptions")["subscribers"] == []
    # an observer's own task is its own to change; another admin may change it too
    own = observer.create(task_body(kind_query("docs:hosts"), "CONTINUOUS"))["documentSelfLink"]
    assert observer.get(TASKS)["documentLinks"] == [own]
    assert maintainer.http.get(own).status_code == 404
    assert observer.http.post(f"{own}/subscriptions", json={"reference": HOOK}).status_code == 200
    assert other_admin.get(own)["documentSelfLink"] == own
    assert set(other_admin.get(TASKS)["documentLinks"]) == {link, own}
    cancelled = other_admin.http.patch(own, json={"taskInfo": {"stage": "CANCELLED"}})
    assert cancelled.status_code == 200 and cancelled.json()["taskInfo"]["stage"] == "CANCELLED"
    assert observer.http.delete(own).status_code == 200
    for client in (observer, maintainer, other_admin):
        client.close()


def test_a_link_another_user_owns_answers_404_on_create(tasks: TaskClient) -> None:
    observer, _ = user_client(tasks, "observer@example.com", "observer")
    tasks.create(task_body(kind_query("docs:hosts"), "CONTINUOUS", link="taken"))
    taken = observer.http.post(TASKS, json=task_body(kind_query("docs:hosts"), link="taken"))
    assert taken.status_code == 404, taken.text
    assert "choose another id" in taken.json()["error"]
    # its own link, or any link for an admin: 409, as before
    observer.create(task_body(kind_query("docs:hosts"), "CONTINUOUS", link="mine"))
    again = observer.http.post(TASKS, json=task_body(kind_query("docs:hosts"), link="mine"))
    assert again.status_code == 409 and "already exists" in again.json()["error"]
    admin = tasks.http.post(TASKS, json=task_body(kind_query("docs:hosts"), link="mine"))
    assert admin.status_code == 409
    observer.close()


def test_a_user_holds_at_most_max_tasks_per_user_tasks(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"max_tasks_per_user": 3})
    with running_server(settings) as server:
        admin = TaskClient(server, login(server))
        observer, _ = user_client(admin, "observer@example.com", "observer")
        hosts = kind_query("docs:hosts")
        made = [
            observer.create(task_body(hosts, "CONTINUOUS"))["documentSelfLink"],
            observer.create(task_body(hosts))["documentSelfLink"],
            observer.create(task_body(hosts), "/core/query-tasks")["documentSelfLink"],
        ]
        for factory in (TASKS, "/core/query-tasks"):
            refused = observer.http.post(factory, json=task_body(hosts, "CONTINUOUS"))
            assert refused.status_code == 429, refused.text
            assert "max_tasks_per_user = 3" in refused.json()["error"]
        # direct tasks are not kept, so not counted; other users have their own allowance
        assert observer.http.post(TASKS, json=task_body(hosts, direct=True)).status_code == 200
        for _ in range(3):
            admin.create(task_body(hosts, "CONTINUOUS"))
        # a task given back (deleted, or expired) makes room for one more
        assert observer.http.delete(made[0]).status_code == 200
        assert observer.http.post(TASKS, json=task_body(hosts)).status_code == 202
        assert observer.http.post(TASKS, json=task_body(hosts)).status_code == 429
        observer.close()
        admin.close()


def test_the_per_user_limits_default_to_the_documented_values() -> None:
    settings = Settings()
    assert settings.max_tasks_per_user == 200
    assert settings.max_campaigns_per_user == 100
    assert settings.max_streams_per_user == 50
    assert settings.max_task_lifetime == 30 * 24 * 3600


# --- issue 14: hostile WILDCARD patterns -------------------------------------------------

ATTACK = "*a*a*a*a*a*a*a*a*a*a*a*a*b"


def test_wildcard_task_survives_a_hostile_hostname(
    live_server: RunningServer, admin_token: str
) -> None:
    """The attack of issue 14 end to end: a continuous WILDCARD task on `hostname`, then an
    agent enrolls with a long hostname that nearly matches (a backtracking matcher froze the
    server for 26 s at 36 characters; at 64 it would never finish)."""
    tasks = TaskClient(live_server, admin_token)
    agents = httpx.Client(base_url=live_server.url, timeout=30)
    try:
        hostile = query(
            term("documentKind", "fleet:host"), term("hostname", ATTACK, match="WILDCARD")
        )
        link = tasks.create(task_body(hostile, "CONTINUOUS", "EXPAND_CONTENT"))["documentSelfLink"]
        with tasks.websocket(link) as ws:
            assert ws.initial()[0] == []
            near_miss = Agent(agents, "test-enroll-secret", "a" * 64, "uuid-hostile")
            assert "node_key" in near_miss.enroll()
            matching = Agent(agents, "test-enroll-secret", "a" * 63 + "b", "uuid-match")
            assert "node_key" in matching.enroll()
            # matching runs in order: the first write was matched (and did not match) before
            # the second one's notification could be sent
            note = ws.next()
            assert note["type"] == "change" and note["event"] == "added", note
            [host] = note["results"]["documentLinks"]
            assert note["results"]["documents"][host]["hostname"] == "a" * 63 + "b"
        # the server still answers everyone
        assert tasks.http.get(TASKS).status_code == 200
    finally:
        agents.close()
        tasks.close()


class _CountedPhrase:
    """Counts the rows the SQLite PHRASE function sees on a server's connections, paced at
    2 ms a row: a query over `rows` documents takes rows * 2 ms unless something stops it."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.calls = 0
        self.started = threading.Event()

    def install(self, server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
        """Write the documents and count what the SQL function sees from now on.

        The function registered on every connection looks `ascii_words` up when called, so
        patching it reaches the connections already open (replacing the pool instead left
        connections checked out at that moment to be collected unclosed: a ResourceWarning
        in CI)."""
        monkeypatch.setattr(sqlite_functions, "ascii_words", self._words)
        writes = [
            Write(Action.POST, f"/docs/p/{i}", "docs:p", {"text": f"quick brown fox {i}"})
            for i in range(self.rows)
        ]
        server.call(server.services.index.apply(writes))
        self.calls = 0  # only the task's query counts
        self.started.clear()

    def _words(self, value: str) -> str:
        self.calls += 1
        self.started.set()
        time.sleep(0.002)
        return ascii_words(value)

    def settled(self) -> int:
        """The count once it stops moving (or every row was seen)."""
        seen = -1
        while self.calls != seen and self.calls < self.rows:
            seen = self.calls
            time.sleep(0.5)
        return self.calls


PHRASE_TASK = task_body(query(term("text", "brown fox", match="PHRASE")), direct=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_direct_query_stops_when_its_client_disconnects(
    server_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a direct PHRASE query kept running after its client had gone."""
    counted = _CountedPhrase(5000)
    with running_server(server_settings) as server:
        counted.install(server, monkeypatch)
        body = json.dumps(PHRASE_TASK).encode()
        host, port = server.url.removeprefix("http://").split(":")
        head = (
            f"POST {TASKS} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {login(server)}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head.encode() + body)
            assert counted.started.wait(30)
        assert counted.settled() < counted.rows // 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_query_task_timeout_stops_the_query(
    server_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = server_settings.model_copy(update={"query_task_timeout": 1.0})
    counted = _CountedPhrase(5000)
    with running_server(settings) as server:
        counted.install(server, monkeypatch)
        with TaskClient(server, login(server)).http as http:
            reply = http.post(TASKS, json=PHRASE_TASK)
        assert reply.status_code == 400
        assert reply.json()["error"].startswith(
            "querySpec.query: the query ran longer than 1 s in the database and was stopped "
            "(query_task_timeout)"
        )
        assert counted.settled() < counted.rows // 2


def test_direct_tasks_with_result_pages_count_against_max_tasks_per_user(
    server_settings: Settings,
) -> None:
    """A direct task with a resultLimit is answered at once, but its page set is kept (in
    the store and in memory) until the task's expiry, up to max_task_lifetime: such tasks
    must count against the user's limit, or one observer keeps any number of page sets
    (redteam review of issue 14 item 14)."""
    settings = server_settings.model_copy(update={"max_tasks_per_user": 3})
    with running_server(settings) as server:
        admin = TaskClient(server, login(server))
        observer, _ = user_client(admin, "observer@example.com", "observer")
        for i in range(3):
            admin.doc("POST", "/docs/hosts", {"documentSelfLink": f"h{i}", "name": f"h{i}"})
        paged = task_body(kind_query("docs:hosts"), direct=True, resultLimit=1)
        codes = [observer.http.post(TASKS, json=paged).status_code for _ in range(6)]
        assert admin.get("/core/document-index/stats")["pageSets"] <= 3, codes
        assert codes.count(429) == 3, codes
        observer.close()
        admin.close()


def test_direct_page_sets_and_standing_tasks_share_max_tasks_per_user(
    server_settings: Settings,
) -> None:
    """Live page sets of direct tasks and standing tasks count together (a standing task's
    own pages count with it); direct tasks that keep nothing are never refused."""
    settings = server_settings.model_copy(update={"max_tasks_per_user": 3})
    with running_server(settings) as server:
        admin = TaskClient(server, login(server))
        observer, _ = user_client(admin, "observer@example.com", "observer")
        for i in range(3):
            admin.doc("POST", "/docs/hosts", {"documentSelfLink": f"h{i}", "name": f"h{i}"})
        paged = task_body(kind_query("docs:hosts"), resultLimit=1)
        standing = observer.http.post(TASKS, json=paged)  # a one-shot task with pages
        assert standing.status_code == 202, standing.text
        direct = task_body(kind_query("docs:hosts"), direct=True, resultLimit=1)
        codes = [observer.http.post(TASKS, json=direct).status_code for _ in range(2)]
        assert codes == [200, 200]
        refused = observer.http.post(TASKS, json=task_body(kind_query("docs:hosts"), "CONTINUOUS"))
        assert refused.status_code == 429
        assert "max_tasks_per_user = 3" in refused.json()["error"]
        assert observer.http.post(TASKS, json=direct).status_code == 429
        unpaged = task_body(kind_query("docs:hosts"), direct=True)
        assert observer.http.post(TASKS, json=unpaged).status_code == 200
        # deleting the standing task (and its pages) gives its place back
        assert observer.http.delete(standing.json()["documentSelfLink"]).status_code == 200
        assert observer.http.post(TASKS, json=direct).status_code == 200
        observer.close()
        admin.close()


def test_a_direct_group_by_run_holds_one_place_whatever_its_page_sets(
    server_settings: Settings,
) -> None:
    """GROUP_BY leaves a page set per group, SINGLE_USE one per page: still one run, one of
    the user's max_tasks_per_user places (else one query would use them all up)."""
    settings = server_settings.model_copy(update={"max_tasks_per_user": 3})
    with running_server(settings) as server:
        admin = TaskClient(server, login(server))
        observer, _ = user_client(admin, "observer@example.com", "observer")
        for i in range(6):
            admin.doc("POST", "/docs/hosts", {"documentSelfLink": f"h{i}", "g": i % 3})
        grouped = task_body(
            kind_query("docs:hosts"),
            "GROUP_BY",
            "SINGLE_USE",
            direct=True,
            groupByTerm={"propertyName": "g"},
            sortTerm={"propertyName": "documentSelfLink"},
            resultLimit=1,
        )
        codes = [observer.http.post(TASKS, json=grouped).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429], codes
        observer.close()
        admin.close()
