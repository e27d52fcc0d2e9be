"""Result pages over HTTP on SQLite and PostgreSQL: SINGLE_USE pages are deleted when first
read (`fleetwatch.query.pages`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.query.task_client import TaskClient, kind_query, task_body
from tests.server import RunningServer


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


@pytest.mark.parametrize("direct", [True, False])
def test_single_use_pages_are_deleted_after_their_first_read(
    tasks: TaskClient, direct: bool
) -> None:
    kind = f"s{uuid.uuid4().hex[:8]}"
    for i in range(5):
        tasks.doc("POST", f"/docs/{kind}", {"documentSelfLink": f"d{i}"})
    body = task_body(
        kind_query(f"docs:{kind}"), "SINGLE_USE", "EXPAND_CONTENT", direct=direct, resultLimit=2
    )
    made = tasks.create(body)
    results = made["results"] if direct else tasks.get(made["documentSelfLink"])["results"]
    assert results["documentCount"] == 5
    link = results["nextPageLink"]
    seen: list[str] = []
    while link is not None:
        page = tasks.get(link)["results"]
        assert "prevPageLink" not in page  # the page before is gone
        assert sorted(page["documents"]) == page["documentLinks"]
        seen.extend(page["documentLinks"])
        again = tasks.http.get(link)
        assert again.status_code == 404, again.text
        assert "SINGLE_USE" in again.json()["error"]
        link = page.get("nextPageLink")
    assert seen == [f"/docs/{kind}/d{i}" for i in range(5)]


def test_pages_without_single_use_can_be_read_again(tasks: TaskClient) -> None:
    kind = f"s{uuid.uuid4().hex[:8]}"
    for i in range(3):
        tasks.doc("POST", f"/docs/{kind}", {"documentSelfLink": f"d{i}"})
    body = task_body(kind_query(f"docs:{kind}"), direct=True, resultLimit=2)
    link = tasks.create(body)["results"]["nextPageLink"]
    assert tasks.get(link)["results"] == tasks.get(link)["results"]


def test_group_pages_are_single_use_too(tasks: TaskClient) -> None:
    kind = f"s{uuid.uuid4().hex[:8]}"
    for i in range(3):
        tasks.doc("POST", f"/docs/{kind}", {"documentSelfLink": f"d{i}", "g": i % 2})
    body = task_body(
        kind_query(f"docs:{kind}"),
        "GROUP_BY",
        "SINGLE_USE",
        direct=True,
        groupByTerm={"propertyName": "g"},
        sortTerm={"propertyName": "documentSelfLink", "propertyType": "STRING"},
    )
    groups = tasks.create(body)["results"]["nextPageLinksPerGroup"]
    assert tasks.get(groups["0"])["results"]["documentLinks"] == [
        f"/docs/{kind}/d0",
        f"/docs/{kind}/d2",
    ]
    assert tasks.http.get(groups["0"]).status_code == 404
    assert tasks.get(groups["1"])["results"]["documentLinks"] == [f"/docs/{kind}/d1"]
