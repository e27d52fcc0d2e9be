"""TIME_SNAPSHOT and INCLUDE_ALL_VERSIONS over HTTP, on SQLite and PostgreSQL
(`fleetwatch.query.time_travel`, over `fleetwatch.index.history`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.config import Settings
from tests.conftest import login
from tests.query.task_client import TASKS, TaskClient, WsReader, kind_query, task_body
from tests.server import RunningServer, running_server


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


def _now() -> int:
    return time.time_ns() // 1000


def _snapshot(tasks: TaskClient, kind: str, boundary: int, *options: str) -> dict[str, Any]:
    body = task_body(
        kind_query(f"docs:{kind}"),
        "TIME_SNAPSHOT",
        "EXPAND_CONTENT",
        *options,
        direct=True,
        timeSnapshotBoundaryMicros=boundary,
    )
    results: dict[str, Any] = tasks.create(body)["results"]
    return results


def test_each_document_as_its_latest_version_at_the_boundary(tasks: TaskClient) -> None:
    kind = f"t{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    before = _now()
    tasks.doc("POST", path, {"documentSelfLink": "a", "n": 1})
    tasks.doc("POST", path, {"documentSelfLink": "b", "n": 1})
    t1 = _now()
    tasks.doc("PATCH", f"{path}/a", {"n": 2})
    tasks.doc("DELETE", f"{path}/b")
    tasks.doc("POST", path, {"documentSelfLink": "c", "n": 1})
    t2 = _now()

    assert _snapshot(tasks, kind, before)["documentLinks"] == []
    at1 = _snapshot(tasks, kind, t1)
    assert at1["documentLinks"] == [f"{path}/a", f"{path}/b"]
    assert at1["documents"][f"{path}/a"]["n"] == 1
    assert at1["documents"][f"{path}/a"]["documentVersion"] == 0
    at2 = _snapshot(tasks, kind, t2)
    assert at2["documentLinks"] == [f"{path}/a", f"{path}/c"]  # b deleted by then
    assert at2["documents"][f"{path}/a"]["n"] == 2
    deleted = _snapshot(tasks, kind, t2, "INCLUDE_DELETED")
    assert deleted["documentLinks"] == [f"{path}/a", f"{path}/b", f"{path}/c"]

    # the query runs over the documents as they were: n == 1 matched a at t1, not at t2
    q = {
        "occurance": "MUST_OCCUR",
        "booleanClauses": [
            kind_query(f"docs:{kind}"),
            {"occurance": "MUST_OCCUR", "term": {"propertyName": "n", "matchValue": "1"}},
        ],
    }
    for boundary, expected in ((t1, ["a", "b"]), (t2, ["c"])):
        body = task_body(q, "TIME_SNAPSHOT", direct=True, timeSnapshotBoundaryMicros=boundary)
        links = tasks.create(body)["results"]["documentLinks"]
        assert links == [f"{path}/{x}" for x in expected]
        count = task_body(
            q, "TIME_SNAPSHOT", "COUNT", direct=True, timeSnapshotBoundaryMicros=boundary
        )
        assert tasks.create(count)["results"]["documentCount"] == len(expected)


def test_pages_of_a_snapshot_show_the_versions_at_the_boundary(tasks: TaskClient) -> None:
    kind = f"t{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    for name in ("a", "b", "c"):
        tasks.doc("POST", path, {"documentSelfLink": name, "n": 1})
    t1 = _now()
    for name in ("a", "b", "c"):
        tasks.doc("PATCH", f"{path}/{name}", {"n": 2})
    body = task_body(
        kind_query(f"docs:{kind}"),
        "TIME_SNAPSHOT",
        "EXPAND_CONTENT",
        direct=True,
        timeSnapshotBoundaryMicros=t1,
        resultLimit=2,
    )
    page = tasks.get(tasks.create(body)["results"]["nextPageLink"])["results"]
    assert page["documentLinks"] == [f"{path}/a", f"{path}/b"]
    assert {d["n"] for d in page["documents"].values()} == {1}


def test_include_all_versions_annotates_each_link_with_its_version(tasks: TaskClient) -> None:
    kind = f"t{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    tasks.doc("POST", path, {"documentSelfLink": "a", "n": 1})
    tasks.doc("PATCH", f"{path}/a", {"n": 2})
    t1 = _now()
    tasks.doc("DELETE", f"{path}/a")
    tasks.doc("POST", path, {"documentSelfLink": "b", "n": 5})
    body = task_body(
        kind_query(f"docs:{kind}"), "INCLUDE_ALL_VERSIONS", "EXPAND_CONTENT", direct=True
    )
    results = tasks.create(body)["results"]
    expected = [
        f"{path}/a?documentVersion=0",
        f"{path}/a?documentVersion=1",
        f"{path}/a?documentVersion=2",
        f"{path}/b?documentVersion=0",
    ]
    assert results["documentLinks"] == expected
    assert results["documents"][expected[1]]["n"] == 2
    assert results["documents"][expected[2]]["documentUpdateAction"] == "DELETE"
    at1 = task_body(
        kind_query(f"docs:{kind}"),
        "INCLUDE_ALL_VERSIONS",
        "TIME_SNAPSHOT",
        direct=True,
        timeSnapshotBoundaryMicros=t1,
    )
    assert tasks.create(at1)["results"]["documentLinks"] == expected[:2]
    paged = task_body(
        kind_query(f"docs:{kind}"),
        "INCLUDE_ALL_VERSIONS",
        "EXPAND_CONTENT",
        direct=True,
        resultLimit=3,
    )
    first = tasks.get(tasks.create(paged)["results"]["nextPageLink"])["results"]
    assert first["documentLinks"] == expected[:3]
    assert first["documents"][expected[0]]["n"] == 1


@pytest.mark.parametrize(
    ("options", "spec", "message"),
    [
        (["TIME_SNAPSHOT"], {}, "querySpec.timeSnapshotBoundaryMicros: TIME_SNAPSHOT will return"),
        (
            [],
            {"timeSnapshotBoundaryMicros": 1},
            "querySpec.timeSnapshotBoundaryMicros: either enable",
        ),
        (
            ["INCLUDE_ALL_VERSIONS", "CONTINUOUS"],
            {},
            "querySpec.options: INCLUDE_ALL_VERSIONS is not compatible with CONTINUOUS",
        ),
        (
            ["INCLUDE_ALL_VERSIONS", "CONTINUOUS_STOP_MATCH"],
            {},
            "querySpec.options: INCLUDE_ALL_VERSIONS is not compatible with CONTINUOUS_STOP_MATCH",
        ),
    ],
)
def test_time_options_are_refused_where_they_cannot_run(
    tasks: TaskClient, options: list[str], spec: dict[str, Any], message: str
) -> None:
    reply = tasks.http.post(TASKS, json=task_body(kind_query("docs:none"), *options, **spec))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(message)


def test_a_boundary_older_than_the_history_says_how_far_back_it_goes(
    server_settings: Settings,
) -> None:
    """With a one-second history: once the first changes are trimmed, a boundary before
    them is refused naming the oldest retained time; a boundary within it still sees a
    document whose only retained change came after the boundary."""
    settings_ = server_settings.model_copy(update={"change_retention": 1.0})
    with running_server(settings_) as server:
        tasks = TaskClient(server, login(server))
        try:
            kind = f"t{uuid.uuid4().hex[:8]}"
            path = f"/docs/{kind}"
            early = _now()
            tasks.doc("POST", path, {"documentSelfLink": "a", "n": 1})
            tasks.doc("POST", path, {"documentSelfLink": "b", "n": 1})
            deadline = time.monotonic() + 30
            while True:  # until the retention loop has trimmed both creations
                tasks.doc("POST", path, {"documentSelfLink": f"x{uuid.uuid4().hex[:6]}"})
                body = task_body(
                    kind_query(f"docs:{kind}"),
                    "TIME_SNAPSHOT",
                    direct=True,
                    timeSnapshotBoundaryMicros=early,
                )
                reply = tasks.http.post(TASKS, json=body)
                if reply.status_code == 400 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error.startswith("querySpec.timeSnapshotBoundaryMicros: ")
            assert "goes back to" in error and "send a boundary at or after" in error
            within = _now()
            tasks.doc("PATCH", f"{path}/a", {"n": 2})
            at = _snapshot(tasks, kind, within)
            assert at["documents"][f"{path}/a"]["n"] == 1
            assert at["documents"][f"{path}/b"]["n"] == 1
        finally:
            tasks.close()


WRITES = st.lists(
    st.tuples(
        st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
        st.sampled_from("abc"),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=10,
)


def test_a_snapshot_at_t_equals_the_results_captured_at_t(tasks: TaskClient) -> None:
    """Property: after any writes, TIME_SNAPSHOT at each instant t between them answers
    what a plain query answered at t (links, bodies, and a filtered query's links)."""

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(WRITES)
    def check(writes: list[tuple[str, str, int]]) -> None:
        kind = f"t{uuid.uuid4().hex[:8]}"
        path = f"/docs/{kind}"
        q = kind_query(f"docs:{kind}")
        even = {
            "occurance": "MUST_OCCUR",
            "booleanClauses": [
                q,
                {"occurance": "MUST_OCCUR", "term": {"propertyName": "n", "matchValue": "2"}},
            ],
        }
        captured: list[tuple[int, dict[str, Any], list[str]]] = []
        for method, name, n in writes:
            if method == "POST":
                tasks.http.post(path, json={"documentSelfLink": name, "n": n})
            elif method == "DELETE":
                tasks.http.delete(f"{path}/{name}")
            else:
                tasks.http.request(method, f"{path}/{name}", json={"n": n})
            now = tasks.create(task_body(q, "EXPAND_CONTENT", direct=True))["results"]
            filtered = tasks.create(task_body(even, direct=True))["results"]["documentLinks"]
            captured.append((_now(), now, filtered))
        for t, then, filtered in captured:
            at = _snapshot(tasks, kind, t)
            assert at["documentLinks"] == then["documentLinks"]
            assert at["documents"] == then["documents"]
            body = task_body(even, "TIME_SNAPSHOT", direct=True, timeSnapshotBoundaryMicros=t)
            assert tasks.create(body)["results"]["documentLinks"] == filtered

    check()


# --- TIME_SNAPSHOT + CONTINUOUS: as of the boundary, then live -----------------------------


def _as_of_task(kind: str, boundary: int, *options: str) -> dict[str, Any]:
    return task_body(
        kind_query(f"docs:{kind}"),
        "TIME_SNAPSHOT",
        "CONTINUOUS",
        "CONTINUOUS_STOP_MATCH",
        "EXPAND_CONTENT",
        *options,
        timeSnapshotBoundaryMicros=boundary,
    )


def _apply(state: dict[str, Any], message: dict[str, Any]) -> None:
    (link,) = message["results"]["documentLinks"]
    if message["event"] in ("deleted", "stopMatch"):
        state.pop(link, None)
    else:
        state[link] = message["results"]["documents"][link]


def _until_current(ws: WsReader) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The initial documents, then the changes up to the `current` marker after them."""
    docs: dict[str, Any] = {}
    while True:
        message = ws.raw()
        assert message["type"] == "initial", message
        docs.update(message["results"].get("documents", {}))
        if message["last"]:
            break
    changes = []
    while (message := ws.raw())["type"] != "current":
        assert message["type"] == "change", message
        changes.append(message)
    return docs, changes


def test_time_snapshot_continuous_starts_at_the_boundary_with_no_gap(tasks: TaskClient) -> None:
    kind = f"t{uuid.uuid4().hex[:8]}"
    path = f"/docs/{kind}"
    tasks.doc("POST", path, {"documentSelfLink": "a", "n": 1})
    tasks.doc("POST", path, {"documentSelfLink": "b", "n": 1})
    boundary = _now()
    tasks.doc("PATCH", f"{path}/a", {"n": 2})
    tasks.doc("DELETE", f"{path}/b")
    tasks.doc("POST", path, {"documentSelfLink": "c", "n": 1})

    task = tasks.create(_as_of_task(kind, boundary))
    link = task["documentSelfLink"]
    assert task["taskInfo"]["stage"] == "STARTED"
    with tasks.websocket(link) as ws:
        first = ws.raw()
        assert first["type"] == "initial" and first["last"]
        assert first["results"]["documentLinks"] == [f"{path}/a", f"{path}/b"]
        assert first["results"]["documents"][f"{path}/a"]["n"] == 1  # as of the boundary
        assert first["seq"] == task["asOfSeq"] == task["seq"]
        changes = [ws.raw() for _ in range(3)]
        assert [(c["event"], c["results"]["documentLinks"][0]) for c in changes] == [
            ("updated", f"{path}/a"),
            ("deleted", f"{path}/b"),
            ("added", f"{path}/c"),
        ]
        seqs = [first["seq"], *(c["seq"] for c in changes)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        assert ws.raw() == {"type": "current", "seq": changes[-1]["seq"], "documentSelfLink": link}
        tasks.doc("PATCH", f"{path}/c", {"n": 5})  # and live from there
        live = ws.next()
        assert live["event"] == "updated" and live["seq"] > changes[-1]["seq"]
        assert live["results"]["documents"][f"{path}/c"]["n"] == 5

    # a COUNT task counts as of the boundary (a, b), then follows the log (b went, c came)
    counted = task_body(
        kind_query(f"docs:{kind}"),
        "TIME_SNAPSHOT",
        "CONTINUOUS",
        "COUNT",
        timeSnapshotBoundaryMicros=boundary,
    )
    assert tasks.create(counted)["results"]["documentCount"] == 2
    assert tasks.create(counted)["results"]["continuousResults"] == {
        "documentCountAdded": 1,
        "documentCountUpdated": 2,
        "documentCountDeleted": 1,
        "documentCountStopMatched": 0,
    }


def test_time_snapshot_continuous_at_t_equals_live_results_at_t(tasks: TaskClient) -> None:
    """Property: for any writes, a TIME_SNAPSHOT + CONTINUOUS task at an instant t between
    them starts with what a live query answered at t, and its initial results followed by
    its changes end in the live results of now."""

    @settings(
        max_examples=5,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(WRITES, WRITES)
    def check(before: list[tuple[str, str, int]], after: list[tuple[str, str, int]]) -> None:
        kind = f"t{uuid.uuid4().hex[:8]}"
        path = f"/docs/{kind}"
        q = kind_query(f"docs:{kind}")

        def write(method: str, name: str, n: int) -> None:
            if method == "POST":
                tasks.http.post(path, json={"documentSelfLink": name, "n": n})
            elif method == "DELETE":
                tasks.http.delete(f"{path}/{name}")
            else:
                tasks.http.request(method, f"{path}/{name}", json={"n": n})

        for w in before:
            write(*w)
        captured = tasks.create(task_body(q, "EXPAND_CONTENT", direct=True))["results"]
        t = _now()
        for w in after:
            write(*w)
        link = tasks.create(_as_of_task(kind, t))["documentSelfLink"]
        with tasks.websocket(link) as ws:
            state, changes = _until_current(ws)
        tasks.http.delete(link)
        assert state == captured["documents"]
        for change in changes:
            _apply(state, change)
        now = tasks.create(task_body(q, "EXPAND_CONTENT", direct=True))["results"]
        assert state == now["documents"]

    check()
