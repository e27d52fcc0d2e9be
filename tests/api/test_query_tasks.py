"""One-shot query tasks over HTTP on both backends: options, paging, lifecycle, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.query.task_client import (
    TASKS,
    TaskClient,
    kind_query,
    query,
    task_body,
    term,
)
from tests.server import RunningServer


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
    moved = tasks.http.patch(link, json={"documentExpirationTimeMicros": 2**62})
    assert moved.json()["documentExpirationTimeMicros"] == 2**62
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
