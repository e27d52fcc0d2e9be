"""GROUP_BY over HTTP on SQLite and PostgreSQL: one first page per group, each page paged
and shown as any other result (`fleetwatch.query.group_by`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.query.task_client import TASKS, TaskClient, kind_query, task_body
from tests.server import RunningServer

NAME_SORT = {"propertyName": "name", "propertyType": "STRING"}


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


def _pages(tasks: TaskClient, first: str) -> list[dict[str, Any]]:
    """Every page from `first` on, following nextPageLink."""
    out: list[dict[str, Any]] = []
    link: str | None = first
    while link is not None:
        page = tasks.get(link)["results"]
        out.append(page)
        link = page.get("nextPageLink")
    return out


def _group_links(tasks: TaskClient, first: str) -> list[str]:
    return [link for page in _pages(tasks, first) for link in page["documentLinks"]]


def test_groups_hold_their_documents_in_sort_order_paged(tasks: TaskClient) -> None:
    kind = f"g{uuid.uuid4().hex[:8]}"
    rows = [("a1", "red", "zed"), ("a2", "red", "amy"), ("a3", "red", "kim"), ("b1", "blue", "bo")]
    for doc_id, color, name in rows:
        tasks.doc(
            "POST", f"/docs/{kind}", {"documentSelfLink": doc_id, "color": color, "name": name}
        )
    tasks.doc("POST", f"/docs/{kind}", {"documentSelfLink": "n1", "name": "none"})
    body = task_body(
        kind_query(f"docs:{kind}"),
        "GROUP_BY",
        "EXPAND_CONTENT",
        direct=True,
        groupByTerm={"propertyName": "color"},
        sortTerm=NAME_SORT,
        resultLimit=2,
    )
    results = tasks.create(body)["results"]
    per_group = results["nextPageLinksPerGroup"]
    assert list(per_group) == ["blue", "red", "DocumentsWithoutResults"]
    assert "nextPageLink" not in results
    red = _pages(tasks, per_group["red"])
    assert [p["documentLinks"] for p in red] == [
        [f"/docs/{kind}/a2", f"/docs/{kind}/a3"],
        [f"/docs/{kind}/a1"],
    ]
    assert red[0]["documents"][f"/docs/{kind}/a2"]["name"] == "amy"
    assert red[1]["prevPageLink"]
    assert _group_links(tasks, per_group["DocumentsWithoutResults"]) == [f"/docs/{kind}/n1"]


def test_group_result_limit_and_group_sort_order_page_the_groups(tasks: TaskClient) -> None:
    kind = f"g{uuid.uuid4().hex[:8]}"
    for i, size in enumerate([3, 10, 2, 10]):
        tasks.doc("POST", f"/docs/{kind}", {"documentSelfLink": f"d{i}", "size": size, "name": "x"})
    body = task_body(
        kind_query(f"docs:{kind}"),
        "GROUP_BY",
        direct=True,
        groupByTerm={"propertyName": "size", "propertyType": "LONG"},
        groupSortTerm={"propertyName": "size", "propertyType": "LONG"},
        groupSortOrder="DESC",
        groupResultLimit=2,
        sortTerm=NAME_SORT,
    )
    results = tasks.create(body)["results"]
    assert list(results["nextPageLinksPerGroup"]) == ["10", "3"]
    assert _group_links(tasks, results["nextPageLinksPerGroup"]["10"]) == [
        f"/docs/{kind}/d1",
        f"/docs/{kind}/d3",
    ]
    more = tasks.get(results["nextPageLink"])["results"]
    assert list(more["nextPageLinksPerGroup"]) == ["2"]
    assert "nextPageLink" not in more


@pytest.mark.parametrize(
    ("options", "spec", "message"),
    [
        (["GROUP_BY"], {"groupByTerm": {"propertyName": "c"}}, "querySpec.sortTerm: is required"),
        (["GROUP_BY"], {"sortTerm": NAME_SORT}, "querySpec.groupByTerm: is required"),
        (
            ["GROUP_BY", "COUNT", "EXPAND_CONTENT"],
            {"groupByTerm": {"propertyName": "c"}},
            "querySpec.options: EXPAND_CONTENT is not compatible with COUNT",
        ),
        (
            ["GROUP_BY", "CONTINUOUS"],
            {"groupByTerm": {"propertyName": "c"}, "sortTerm": NAME_SORT},
            "querySpec.options: GROUP_BY is not compatible with CONTINUOUS without COUNT",
        ),
        ([], {"groupByTerm": {"propertyName": "c"}}, "querySpec.groupByTerm: only used with"),
    ],
)
def test_group_by_is_refused_as_xenon_refuses_it(
    tasks: TaskClient, options: list[str], spec: dict[str, Any], message: str
) -> None:
    reply = tasks.http.post(TASKS, json=task_body(kind_query("docs:none"), *options, **spec))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(message)


def test_groups_union_is_the_ungrouped_result(tasks: TaskClient) -> None:
    """Property: whatever the documents, the groups (in result order within each) are a
    partition of the ungrouped sorted result."""

    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c", 1, 2.5, True, None]),
                st.text("xyz", max_size=3),
            ),
            max_size=12,
        ),
        st.integers(1, 4),
    )
    def check(docs: list[tuple[Any, str]], limit: int) -> None:
        kind = f"g{uuid.uuid4().hex[:8]}"
        for i, (value, name) in enumerate(docs):
            doc: dict[str, Any] = {"documentSelfLink": f"d{i}", "name": name}
            if value is not None:
                doc["v"] = value
            tasks.doc("POST", f"/docs/{kind}", doc)
        q = kind_query(f"docs:{kind}")
        plain = tasks.create(task_body(q, "SORT", direct=True, sortTerm=NAME_SORT))
        grouped = tasks.create(
            task_body(
                q,
                "GROUP_BY",
                direct=True,
                groupByTerm={"propertyName": "v"},
                sortTerm=NAME_SORT,
                resultLimit=limit,
            )
        )
        groups = {
            value: _group_links(tasks, first)
            for value, first in grouped["results"]["nextPageLinksPerGroup"].items()
        }
        union = [link for links in groups.values() for link in links]
        expected = plain["results"]["documentLinks"]
        assert sorted(union) == sorted(expected)
        order = {link: i for i, link in enumerate(expected)}
        for links in groups.values():
            assert links == sorted(links, key=order.__getitem__)

    check()
