"""Continuous query tasks end to end over real sockets, on SQLite and PostgreSQL.

The seed's scenario (initial results, updates, DELETE with its action, expiry, list, cancel,
delete), and Xenon's own test scenarios (reference §3.1): continuousQueryTask counts and
queryTaskWithContiniousStopMatch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

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
    yield client
    client.close()


def test_seed_scenario_initial_updates_delete_expiry_cancel(tasks: TaskClient) -> None:
    for name in ("ann", "bob", "cy"):
        tasks.doc("POST", "/docs/employees", {"documentSelfLink": name, "name": name})
    tasks.doc("POST", "/docs/others", {"documentSelfLink": "x", "name": "x"})
    created = tasks.http.post(
        TASKS,
        json=task_body(
            kind_query("docs:employees"), "CONTINUOUS", "EXPAND_CONTENT", link="employee-watch"
        ),
    )
    assert created.status_code == 202, created.text
    task = created.json()
    link = task["documentSelfLink"]
    assert link == f"{TASKS}/employee-watch"
    assert task["taskInfo"]["stage"] == "STARTED"
    assert sorted(task["results"]["documentLinks"]) == [
        "/docs/employees/ann",
        "/docs/employees/bob",
        "/docs/employees/cy",
    ]
    assert tasks.stats()["activeQueryFilterCount"] == 1
    assert link in tasks.get(TASKS)["documentLinks"]

    with tasks.websocket(link) as ws:
        links, docs, seq = ws.initial()
        assert sorted(links) == sorted(task["results"]["documentLinks"])
        assert docs["/docs/employees/ann"]["name"] == "ann"

        tasks.doc("POST", "/docs/employees", {"documentSelfLink": "dee", "name": "dee"})
        tasks.doc("POST", "/docs/others", {"documentSelfLink": "y"})  # does not match
        tasks.doc("PUT", "/docs/employees/ann", {"name": "anne"})
        tasks.doc("DELETE", "/docs/employees/bob")
        added, updated, deleted = ws.take(3)
        assert added["type"] == "change" and added["event"] == "added"
        assert added["results"]["documentLinks"] == ["/docs/employees/dee"]
        assert added["results"]["documents"]["/docs/employees/dee"]["name"] == "dee"
        assert added["documentUpdateAction"] == "POST" and added["seq"] > seq
        assert updated["documentUpdateAction"] == "PUT"
        assert updated["results"]["documents"]["/docs/employees/ann"]["name"] == "anne"
        assert deleted["documentUpdateAction"] == "DELETE" and deleted["event"] == "deleted"
        doc = deleted["results"]["documents"]["/docs/employees/bob"]
        assert doc["documentUpdateAction"] == "DELETE" and doc["name"] == "bob"
        assert added["seq"] < updated["seq"] < deleted["seq"]

        # expiry: the PATCH that sets it, then the expiry's DELETE (Xenon's pair)
        tasks.doc("PATCH", "/docs/employees/cy", {"documentExpirationTimeMicros": 1})
        patch, expired = ws.take(2)
        assert patch["documentUpdateAction"] == "PATCH"
        assert expired["documentUpdateAction"] == "DELETE"
        assert expired["results"]["documentLinks"] == ["/docs/employees/cy"]
        assert ws.quiet()

        # GET of a continuous task shows the latest notification (Xenon)
        assert tasks.get(link)["results"]["documentLinks"] == ["/docs/employees/cy"]

        cancelled = tasks.http.patch(link, json={"taskInfo": {"stage": "CANCELLED"}})
        assert cancelled.status_code == 200 and cancelled.json()["taskInfo"]["stage"] == "CANCELLED"
        closed = ws.next()
        assert closed["type"] == "closed" and "cancelled" in closed["reason"]
    assert tasks.stats()["activeQueryFilterCount"] == 0
    assert tasks.get(link)["taskInfo"]["stage"] == "CANCELLED"
    refused = tasks.http.get(f"{link}/events")
    assert refused.status_code == 409 and "CANCELLED" in refused.json()["error"]

    # DELETE of a running task stops it and removes it: no filter is left behind
    other = tasks.create(task_body(kind_query("docs:employees"), "CONTINUOUS"))
    assert tasks.stats()["activeQueryFilterCount"] == 1
    gone = tasks.http.delete(other["documentSelfLink"])
    assert gone.status_code == 200 and gone.json()["documentSelfLink"] == other["documentSelfLink"]
    assert tasks.stats()["activeQueryFilterCount"] == 0
    assert tasks.http.get(other["documentSelfLink"]).status_code == 404
    assert other["documentSelfLink"] not in tasks.get(TASKS)["documentLinks"]
    tasks.doc("POST", "/docs/employees", {"documentSelfLink": "eve"})
    assert tasks.stats()["subscribers"] == 0


DAYS_30 = 30 * 24 * 3600 * 1_000_000


def test_default_expiry_is_600_seconds_and_tasks_expire(tasks: TaskClient) -> None:
    task = tasks.create(task_body(kind_query("docs:e"), "CONTINUOUS", expiration=0))
    created = task["documentUpdateTimeMicros"]
    assert task["documentExpirationTimeMicros"] - created == pytest.approx(600e6, abs=5e6)
    # "never" (2**63-1) is lowered to the longest lifetime, 30 days (max_task_lifetime)
    forever = tasks.create(task_body(kind_query("docs:e"), "CONTINUOUS"))
    lifetime = forever["documentExpirationTimeMicros"] - forever["documentUpdateTimeMicros"]
    assert lifetime == pytest.approx(DAYS_30, abs=5e6)
    assert tasks.stats()["activeQueryFilterCount"] == 2
    # expire the first one now: it is removed like a DELETE, its filter with it
    link = task["documentSelfLink"]
    with tasks.websocket(link) as ws:
        ws.initial()
        moved = tasks.http.patch(link, json={"documentExpirationTimeMicros": 1})
        assert moved.status_code == 200
        closed = ws.next()
        assert closed["type"] == "closed" and "expired" in closed["reason"]
    assert tasks.http.get(link).status_code == 404
    stats = tasks.wait_stats("activeQueryFilterCount", 1)
    assert stats["activeQueryFilterCount"] == 1
    assert tasks.http.get(forever["documentSelfLink"]).status_code == 200


def test_xenon_continuous_query_task_counts(tasks: TaskClient) -> None:
    """Reference §3.1 continuousQueryTask, with exact counts where Xenon drifts."""
    n = 6
    text = uuid.uuid4().hex
    q1 = tasks.create(
        task_body(kind_query("docs:svc", textValue=text), "CONTINUOUS", "EXPAND_CONTENT")
    )
    with tasks.websocket(q1["documentSelfLink"]) as ws1:
        assert ws1.initial()[0] == []
        for i in range(n):
            tasks.doc(
                "POST",
                "/docs/svc",
                {"documentSelfLink": f"a{i}", "textValue": text, "stringValue": "s"},
            )
        notes = ws1.take(n)
        for note in notes:
            (doc,) = note["results"]["documents"].values()
            assert doc["textValue"] == text
        for i in range(n):
            tasks.doc("PUT", f"/docs/svc/a{i}", {"textValue": text, "stringValue": "s"})
        assert [m["event"] for m in ws1.take(n)] == ["updated"] * n

        counted = tasks.create(
            task_body(kind_query("docs:svc", stringValue="s"), "CONTINUOUS", "COUNT")
        )
        count_link = counted["documentSelfLink"]
        assert tasks.get(count_link)["results"]["documentCount"] == n
        with tasks.websocket(count_link) as ws2:
            (initial,) = ws2.take(1)
            assert initial["results"]["documentCount"] == n

            for i in range(n):  # N more matching both
                tasks.doc(
                    "POST",
                    "/docs/svc",
                    {"documentSelfLink": f"b{i}", "textValue": text, "stringValue": "s"},
                )
            assert len(ws1.take(n)) == n
            last = ws2.take(n)[-1]["results"]
            assert last["documentCount"] == 2 * n
            assert last["continuousResults"]["documentCountAdded"] == n
            assert "documents" not in last  # COUNT carries no documents

            for i in range(n):  # first batch leaves the count query
                tasks.doc("PATCH", f"/docs/svc/a{i}", {"stringValue": "other"})
            assert len(ws1.take(n)) == n
            assert ws2.quiet()  # no notification to a task the documents do not match
            state = tasks.get(count_link)["results"]
            # Xenon keeps 2N here; fleetwatch subtracts documents that stopped matching
            assert state["documentCount"] == n
            assert state["continuousResults"] == {
                "documentCountAdded": n,
                "documentCountUpdated": 0,
                "documentCountDeleted": 0,
                "documentCountStopMatched": n,
            }

            for i in range(n):  # second batch updated, still matching both
                tasks.doc("PATCH", f"/docs/svc/b{i}", {"extra": i})
            assert len(ws1.take(n)) == n
            last = ws2.take(n)[-1]["results"]
            assert last["continuousResults"]["documentCountUpdated"] == n
            assert last["documentCount"] == n

            for i in range(n // 2):  # delete half of each batch
                tasks.doc("DELETE", f"/docs/svc/a{i}")
                tasks.doc("DELETE", f"/docs/svc/b{i}")
            assert [m["documentUpdateAction"] for m in ws1.take(n)] == ["DELETE"] * n
            last = ws2.take(n // 2)[-1]["results"]
            assert last["documentCount"] == n - n // 2
            assert last["continuousResults"]["documentCountDeleted"] == n // 2

            for i in range(n // 2, n):  # expire the rest: PATCH + expiry DELETE each
                tasks.doc("PATCH", f"/docs/svc/a{i}", {"documentExpirationTimeMicros": 1})
                tasks.doc("PATCH", f"/docs/svc/b{i}", {"documentExpirationTimeMicros": 1})
            actions = [m["documentUpdateAction"] for m in ws1.take(2 * n)]
            assert actions.count("PATCH") == n and actions.count("DELETE") == n
            final = ws2.take(n)[-1]["results"]
            assert final["documentCount"] == 0
            assert final["continuousResults"] == {
                "documentCountAdded": n,
                "documentCountUpdated": n + n // 2,
                "documentCountDeleted": n,
                "documentCountStopMatched": n,
            }
            assert ws1.quiet(0.3) and ws2.quiet(0.3)


def test_xenon_stop_match(tasks: TaskClient) -> None:
    """Reference §3.1 queryTaskWithContiniousStopMatch; leaving says so, with a reason."""
    n = 4
    q = kind_query("docs:sm", color="red")
    a = tasks.create(task_body(q, "CONTINUOUS_STOP_MATCH", "EXPAND_CONTENT"))
    with tasks.websocket(a["documentSelfLink"]) as wa:
        wa.initial()
        for i in range(n):
            tasks.doc("POST", "/docs/sm", {"documentSelfLink": f"d{i}", "color": "red"})
        assert wa.quiet()  # a creation has no previous version: no stop-match
        for i in range(n):
            tasks.doc("PATCH", f"/docs/sm/d{i}", {"color": "blue"})
        left = wa.take(n)
        for message in left:
            assert message["stopMatch"] is True and message["event"] == "stopMatch"
            assert message["reason"] == "the document no longer matches the query"
            (doc,) = message["results"]["documents"].values()
            assert doc["color"] == "blue"

        b = tasks.create(task_body(q, "CONTINUOUS", "CONTINUOUS_STOP_MATCH", "EXPAND_CONTENT"))
        with tasks.websocket(b["documentSelfLink"]) as wb:
            wb.initial()
            for i in range(n):
                tasks.doc("PATCH", f"/docs/sm/d{i}", {"color": "red"})
            back = wb.take(n)
            assert all(m["event"] == "added" and m["stopMatch"] is False for m in back)
            assert wa.quiet()
            for i in range(n):
                tasks.doc("PATCH", f"/docs/sm/d{i}", {"color": "green"})
            assert len(wa.take(n)) + len(wb.take(n)) == 2 * n
            assert wa.quiet(0.3) and wb.quiet(0.3)


def test_tasks_see_the_same_write_independently(tasks: TaskClient) -> None:
    shape = query(term("documentKind", "docs:m"), term("zone", "z*", match="WILDCARD"))
    links = [tasks.create(task_body(shape, "CONTINUOUS"))["documentSelfLink"] for _ in range(3)]
    readers = []
    with tasks.websocket(links[0]) as w0, tasks.websocket(links[1]) as w1:
        readers = [w0, w1]
        for r in readers:
            r.initial()
        tasks.doc("POST", "/docs/m", {"documentSelfLink": "1", "zone": "zeta"})
        tasks.doc("POST", "/docs/m", {"documentSelfLink": "2", "zone": "alpha"})
        for r in readers:
            (note,) = r.take(1)
            assert note["results"]["documentLinks"] == ["/docs/m/1"]
            assert "documents" not in note["results"]  # no EXPAND_CONTENT
            assert r.quiet(0.3)


def test_a_longer_expiry_is_lowered_to_the_maximum_lifetime(tasks: TaskClient) -> None:
    """max_task_lifetime: creating, PATCHing and direct tasks' pages; shorter expiries stay."""
    for options, direct in ((("CONTINUOUS",), False), ((), False), ((), True)):
        body = task_body(kind_query("docs:e"), *options, direct=direct, expiration=2**63 - 1)
        if direct:
            body["querySpec"]["resultLimit"] = 1  # its pages live as long as the task would
        made = tasks.create(body)
        lifetime = made["documentExpirationTimeMicros"] - made["documentUpdateTimeMicros"]
        assert 0 < lifetime <= DAYS_30, (options, direct, made)
    link = tasks.create(task_body(kind_query("docs:e"), "CONTINUOUS"))["documentSelfLink"]
    for asked in (2**63 - 1, 2**62):
        moved = tasks.http.patch(link, json={"documentExpirationTimeMicros": asked}).json()
        assert moved["documentExpirationTimeMicros"] - moved["documentUpdateTimeMicros"] == (
            pytest.approx(DAYS_30, abs=5e6)
        )
    now = tasks.get(link)["documentUpdateTimeMicros"]
    soon = now + 3600 * 1_000_000
    moved = tasks.http.patch(link, json={"documentExpirationTimeMicros": soon}).json()
    assert moved["documentExpirationTimeMicros"] == soon


def test_a_direct_tasks_pages_last_at_most_the_default_expiry(tasks: TaskClient) -> None:
    """Nobody can DELETE a direct task's pages: a later expiry than 600 s ("never"
    included) is lowered to it, on the task and its pages; a shorter one stays."""
    for i in range(2):
        tasks.doc("POST", "/docs/dp", {"documentSelfLink": f"d{i}"})
    body = task_body(kind_query("docs:dp"), direct=True, expiration=2**63 - 1, resultLimit=1)
    made = tasks.create(body)
    lifetime = made["documentExpirationTimeMicros"] - made["documentUpdateTimeMicros"]
    assert 0 < lifetime <= 600 * 1_000_000, made
    page = tasks.get(made["results"]["nextPageLink"])
    assert page["documentExpirationTimeMicros"] == made["documentExpirationTimeMicros"]
    soon = made["documentUpdateTimeMicros"] + 60 * 1_000_000
    body = task_body(kind_query("docs:dp"), direct=True, expiration=soon, resultLimit=1)
    assert tasks.create(body)["documentExpirationTimeMicros"] == soon
