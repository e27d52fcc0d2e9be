"""Group counts (`fleetwatch.query.group_counts`): GROUP_BY + COUNT, one-shot and live with
CONTINUOUS, over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.index.document import Action, Change
from fleetwatch.query.group_by import WITHOUT_VALUE, group_value
from fleetwatch.query.group_counts import GroupCounts, group_name
from fleetwatch.query.option_rules import parse_query_task
from fleetwatch.query.spec_enums import TaskStage
from fleetwatch.query.stream_events import Event, classify
from fleetwatch.query.task_records import TaskRecord
from tests.query.task_client import TASKS, TaskClient, WsReader, kind_query, task_body
from tests.server import RunningServer


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


def _counts_task(kind: str, *options: str, **spec: Any) -> dict[str, Any]:
    return task_body(
        kind_query(f"docs:{kind}"),
        "GROUP_BY",
        "COUNT",
        *options,
        groupByTerm={"propertyName": "osquery_version"},
        **spec,
    )


def _fresh(tasks: TaskClient, kind: str) -> dict[str, int]:
    """A one-shot GROUP_BY + COUNT, run now."""
    results = tasks.create(_counts_task(kind, direct=True))["results"]
    counts: dict[str, int] = results["groupCounts"]
    assert results["documentCount"] == sum(counts.values())
    return counts


def test_hosts_by_osquery_version_live(tasks: TaskClient) -> None:
    kind = f"h{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    for name, version in (("h1", "5.9.1"), ("h2", "5.9.1"), ("h3", "5.10.2")):
        tasks.doc("POST", path, {"documentSelfLink": name, "osquery_version": version})
    tasks.doc("POST", path, {"documentSelfLink": "h4"})  # no version: its own group
    assert _fresh(tasks, kind) == {"5.9.1": 2, "5.10.2": 1, WITHOUT_VALUE: 1}

    task = tasks.create(_counts_task(kind, "CONTINUOUS"))
    link = task["documentSelfLink"]
    assert task["results"]["groupCounts"] == {"5.9.1": 2, "5.10.2": 1, WITHOUT_VALUE: 1}
    assert task["results"]["documentCount"] == 4
    with tasks.websocket(link) as ws:
        initial = ws.raw()
        assert initial["type"] == "initial" and initial["last"]
        assert initial["results"]["groupCounts"] == task["results"]["groupCounts"]
        assert ws.raw()["type"] == "current"

        tasks.doc("PATCH", f"{path}/h1", {"osquery_version": "5.10.2"})
        moved = ws.next()
        assert moved["type"] == "change" and moved["seq"] > initial["seq"]
        assert moved["results"]["groupCounts"] == {"5.9.1": 1, "5.10.2": 2}
        assert moved["results"]["documentLinks"] == [f"{path}/h1"]

        tasks.doc("PATCH", f"{path}/h1", {"cpu": 3})  # same group: no count moves
        tasks.doc("DELETE", f"{path}/h3")
        deleted = ws.next()
        assert deleted["results"]["documentLinks"] == [f"{path}/h3"]  # not h1's PATCH
        assert deleted["results"]["groupCounts"] == {"5.10.2": 1}
        assert deleted["seq"] > moved["seq"] + 1

        tasks.doc("PATCH", f"{path}/h2", {"osquery_version": "5.11.0"})
        emptied = ws.next()
        assert emptied["results"]["groupCounts"] == {"5.9.1": 0, "5.11.0": 1}
        tasks.doc("POST", f"/docs/other{kind}", {"documentSelfLink": "x", "osquery_version": "1"})
        tasks.doc("PATCH", f"{path}/h4", {"osquery_version": 5})  # a number: group "5"
        numbered = ws.next()
        assert numbered["results"]["groupCounts"] == {WITHOUT_VALUE: 0, "5": 1}
        assert ws.quiet()
    expected = {"5.10.2": 1, "5.11.0": 1, "5": 1}
    assert tasks.get(link)["results"]["groupCounts"] == expected
    assert tasks.get(link)["results"]["documentCount"] == 3
    assert _fresh(tasks, kind) == expected


def test_failing_policy_results_by_team(tasks: TaskClient) -> None:
    """The docs' second example: failing results of one policy, counted per team, live;
    a result that passes again leaves its team's count."""
    kind = f"p{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    for host, team, passing in (("1", "web", False), ("2", "web", True), ("3", "db", False)):
        tasks.doc("POST", path, {"documentSelfLink": host, "team": team, "passes": passing})
    failing = kind_query(f"docs:{kind}", passes="false")
    body = task_body(
        failing, "GROUP_BY", "COUNT", "CONTINUOUS", groupByTerm={"propertyName": "team"}
    )
    task = tasks.create(body)
    assert task["results"]["groupCounts"] == {"web": 1, "db": 1}
    with tasks.websocket(task["documentSelfLink"]) as ws:
        ws.initial()
        tasks.doc("PATCH", f"{path}/2", {"passes": False})
        assert ws.next()["results"]["groupCounts"] == {"web": 2}
        tasks.doc("PATCH", f"{path}/3", {"passes": True})  # recovered: leaves the results
        assert ws.next()["results"]["groupCounts"] == {"db": 0}
    assert tasks.get(task["documentSelfLink"])["results"]["groupCounts"] == {"web": 2}


def test_group_counts_are_refused_where_they_mean_nothing(tasks: TaskClient) -> None:
    reply = tasks.http.post(
        TASKS,
        json=task_body(
            kind_query("docs:none"),
            "GROUP_BY",
            "CONTINUOUS",
            groupByTerm={"propertyName": "team"},
            sortTerm={"propertyName": "team"},
        ),
    )
    assert reply.status_code == 400
    assert "add COUNT for live group counts" in reply.json()["error"]


def _drain(ws: WsReader) -> list[dict[str, Any]]:
    """The messages that arrive until the stream has been quiet for a second."""
    out = []
    while True:
        try:
            out.append(ws.raw(1.0))
        except TimeoutError:
            return out


VALUES = st.sampled_from(["5.9", "5.10", "", 1, 2.5, True, False, None, {"x": 1}])
#: A write: (document number, its group value, whether it matches the query), or a delete.
WRITES = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 5), VALUES, st.booleans()),
        st.tuples(st.integers(0, 5), st.just("DELETE"), st.just(True)),
    ),
    max_size=14,
)


def test_live_counts_equal_a_fresh_count_after_any_writes(tasks: TaskClient) -> None:
    """Property: after any sequence of writes, the task's counts (and the counts a stream
    subscriber holds from its change messages) equal a fresh GROUP_BY + COUNT."""

    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(st.tuples(st.integers(0, 5), VALUES), max_size=5), WRITES)
    def check(start: list[tuple[int, Any]], writes: list[tuple[int, Any, bool]]) -> None:
        kind = f"g{uuid.uuid4().hex[:8]}"
        path = f"/docs/{kind}"

        def write(n: int, value: Any, matches: bool) -> None:
            doc: dict[str, Any] = {"documentSelfLink": str(n), "ok": "yes" if matches else "no"}
            if value is not None:
                doc["osquery_version"] = value
            reply = tasks.http.post(path, json=doc)
            if reply.status_code == 409:  # it exists: replace it
                del doc["documentSelfLink"]
                reply = tasks.http.put(f"{path}/{n}", json=doc)
            reply.raise_for_status()

        for n, value in start:
            write(n, value, True)
        q = kind_query(f"docs:{kind}", ok="yes")
        spec: dict[str, Any] = {"groupByTerm": {"propertyName": "osquery_version"}}
        task = tasks.create(task_body(q, "GROUP_BY", "COUNT", "CONTINUOUS", **spec))
        link = task["documentSelfLink"]
        with tasks.websocket(link) as ws:
            held = dict(ws.raw()["results"]["groupCounts"])
            for n, value, matches in writes:
                if value == "DELETE":
                    tasks.http.delete(f"{path}/{n}")  # 404 when absent: fine
                else:
                    write(n, value, matches)
            fresh = tasks.create(task_body(q, "GROUP_BY", "COUNT", direct=True, **spec))
            expected = fresh["results"]["groupCounts"]
            assert tasks.get(link)["results"]["groupCounts"] == expected
            # every notification was queued before the writes answered: drain them
            for message in _drain(ws):
                if message["type"] == "change":
                    held.update(message["results"]["groupCounts"])
        tasks.http.delete(link)
        assert {group: n for group, n in held.items() if n} == expected
        assert all(n > 0 for n in expected.values())

    check()


@pytest.mark.parametrize(
    ("kind", "value", "name"),
    [
        ("s", "5.9", "5.9"),
        ("n", 5, "5"),
        ("n", "1.50", "1.5"),
        ("n", 2.5, "2.5"),
        ("t", None, "true"),
        ("f", None, "false"),
        (None, None, WITHOUT_VALUE),
    ],
)
def test_sql_groups_are_named_as_bodies_are(kind: str | None, value: Any, name: str) -> None:
    assert group_name(kind, value) == name


# --- the live counts in memory (GroupCounts) ---------------------------------------------


def _event(seq: int, prev: dict[str, Any] | None, body: dict[str, Any], delete: bool) -> Event:
    """The event a write is to a stream of every document (all match)."""
    action = Action.DELETE if delete else Action.PUT
    change = Change(seq, "/docs/g/1", "docs:g", seq, action, seq, body, prev)
    kind = classify(action, True, prev is not None)
    assert kind is not None
    return Event(change, kind, prev is not None)


#: Documents (0-5) written with a group value, or deleted.
MEMORY_WRITES = st.lists(
    st.tuples(st.integers(0, 5), st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))),
    max_size=30,
)


@given(MEMORY_WRITES)
def test_counts_in_memory_equal_a_recount_after_any_writes(
    writes: list[tuple[int, str | None]],
) -> None:
    """Property: the counts, their total and each annotation follow a recount of the
    documents as written (None: delete the document)."""
    counts = GroupCounts("v")
    docs: dict[int, dict[str, Any]] = {}
    for seq, (n, value) in enumerate(writes, 1):
        prev = docs.get(n)
        if value is None:
            if prev is None:
                continue
            annotation = counts.apply(_event(seq, prev, prev, True))
            del docs[n]
        else:
            body = {"v": value}
            annotation = counts.apply(_event(seq, prev, body, False))
            docs[n] = body
        recount: dict[str, int] = {}
        for doc in docs.values():
            recount[group_value(doc, "v")] = recount.get(group_value(doc, "v"), 0) + 1
        assert counts.counts == recount
        assert counts.total == len(docs)
        assert counts.results() == {
            "documentLinks": [],
            "documentCount": len(docs),
            "groupCounts": recount,
        }
        if annotation is not None:
            assert annotation["documentCount"] == len(docs)
            for group, n_in in annotation["groupCounts"].items():
                assert recount.get(group, 0) == n_in


class _NoScan(dict[str, int]):
    """Group counts that refuse to be walked whole (keys, values, items, copies)."""

    def _scanned(self, *_: object) -> Any:
        raise AssertionError("an event visited every group")

    keys = values = items = __iter__ = copy = _scanned


def test_an_event_costs_the_same_whatever_the_number_of_groups() -> None:
    """Following a change touches its two groups only: with one group per host, summing
    or copying every group per event is what kept notifications waiting."""
    counts = GroupCounts("v", {f"g{i}": 1 for i in range(1000)})
    counts.counts = _NoScan(counts.counts)
    annotation = counts.apply(_event(1, {"v": "g1"}, {"v": "g2"}, False))
    assert annotation == {"groupCounts": {"g1": 0, "g2": 2}, "documentCount": 1000}
    assert counts.total == 1000


def test_a_task_builds_its_full_counts_when_read_not_per_event() -> None:
    """A live group-count task follows events without copying every group; its GET view
    (and the saved state) shows every group's current count."""
    body = task_body(
        kind_query("docs:g"), "GROUP_BY", "COUNT", "CONTINUOUS", groupByTerm={"propertyName": "v"}
    )
    record = TaskRecord(
        link="/core/local-query-tasks/t",
        factory="/core/local-query-tasks",
        task=parse_query_task(body),
        stage=TaskStage.STARTED,
        expiration_micros=0,
        created_micros=0,
    )
    record.start_counting()
    assert record.group_counts is not None
    record.group_counts.reset({f"g{i}": 1 for i in range(1000)})
    record.results = record.group_counts.results()
    record.group_counts.counts = _NoScan(record.group_counts.counts)
    for seq in range(1, 4):
        assert record.on_event(_event(seq, {"v": f"g{seq}"}, {"v": "g0"}, False)) is not None
    record.group_counts.counts = dict(dict.items(record.group_counts.counts))  # readable
    shown = record.to_json()["results"]
    assert shown["documentCount"] == 1000
    assert shown["groupCounts"]["g0"] == 4
    assert "g1" not in shown["groupCounts"] and len(shown["groupCounts"]) == 997
    assert record.dirty and record.row().body["results"] == shown
