"""SELECT_LINKS, EXPAND_LINKS and EXPAND_SELECTED_FIELDS over HTTP, on SQLite and PostgreSQL
(`fleetwatch.query.links`, `fleetwatch.query.fields`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.query.task_client import TASKS, TaskClient, kind_query, task_body
from tests.server import RunningServer


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


def _setup(tasks: TaskClient) -> str:
    kind = f"l{uuid.uuid4().hex[:8]}"
    tasks.doc("POST", f"/docs/{kind}h", {"documentSelfLink": "h1", "name": "host one"})
    tasks.doc("POST", f"/docs/{kind}h", {"documentSelfLink": "h2", "name": "host two"})
    tasks.doc(
        "POST",
        f"/docs/{kind}",
        {
            "documentSelfLink": "p1",
            "hostLink": f"/docs/{kind}h/h1",
            "peers": [f"/docs/{kind}h/h2", None, f"/docs/{kind}h/gone"],
            "name": "one",
            "extra": {"deep": 1, "other": 2},
        },
    )
    tasks.doc("POST", f"/docs/{kind}", {"documentSelfLink": "p2", "name": "two"})
    return kind


def test_select_links_reports_links_per_document_and_expands_them(tasks: TaskClient) -> None:
    kind = _setup(tasks)
    body = task_body(
        kind_query(f"docs:{kind}"),
        "SELECT_LINKS",
        "EXPAND_LINKS",
        direct=True,
        linkTerms=[{"propertyName": "hostLink"}, {"propertyName": "peers"}],
    )
    results = tasks.create(body)["results"]
    h = f"/docs/{kind}h"
    assert results["selectedLinksPerDocument"] == {
        f"/docs/{kind}/p1": {
            "hostLink": f"{h}/h1",
            "peers.item.0": f"{h}/h2",
            "peers.item.1": f"{h}/gone",
        },
        f"/docs/{kind}/p2": {},
    }
    assert results["selectedLinks"] == [f"{h}/gone", f"{h}/h1", f"{h}/h2"]
    docs = results["selectedDocuments"]
    assert sorted(docs) == [f"{h}/h1", f"{h}/h2"]  # the missing one is left out
    assert docs[f"{h}/h1"]["name"] == "host one"
    assert "documents" not in results


def test_selected_links_on_pages_too(tasks: TaskClient) -> None:
    kind = _setup(tasks)
    body = task_body(
        kind_query(f"docs:{kind}"),
        "SELECT_LINKS",
        direct=True,
        linkTerms=[{"propertyName": "hostLink"}],
        resultLimit=1,
    )
    first = tasks.get(tasks.create(body)["results"]["nextPageLink"])["results"]
    assert first["selectedLinksPerDocument"] == {
        f"/docs/{kind}/p1": {"hostLink": f"/docs/{kind}h/h1"}
    }
    assert first["selectedLinks"] == [f"/docs/{kind}h/h1"]


def test_expand_selected_fields_keeps_only_those_and_the_self_link(tasks: TaskClient) -> None:
    kind = _setup(tasks)
    body = task_body(
        kind_query(f"docs:{kind}"),
        "EXPAND_SELECTED_FIELDS",
        direct=True,
        selectTerms=[{"propertyName": "name"}, {"propertyName": "extra.deep"}],
    )
    docs = tasks.create(body)["results"]["documents"]
    assert docs == {
        f"/docs/{kind}/p1": {
            "documentSelfLink": f"/docs/{kind}/p1",
            "name": "one",
            "extra": {"deep": 1},
        },
        f"/docs/{kind}/p2": {"documentSelfLink": f"/docs/{kind}/p2", "name": "two"},
    }


@pytest.mark.parametrize(
    ("options", "spec", "message"),
    [
        (["SELECT_LINKS"], {}, "querySpec.linkTerms: must have at least one entry"),
        (
            ["EXPAND_LINKS"],
            {},
            "querySpec.options: EXPAND_LINKS must be combined with SELECT_LINKS",
        ),
        (
            ["SELECT_LINKS", "COUNT"],
            {"linkTerms": [{"propertyName": "a"}]},
            "querySpec.options: SELECT_LINKS is not compatible with COUNT",
        ),
        (
            ["SELECT_LINKS", "CONTINUOUS"],
            {"linkTerms": [{"propertyName": "a"}]},
            "querySpec.options: SELECT_LINKS is not compatible with CONTINUOUS",
        ),
        (["EXPAND_SELECTED_FIELDS"], {}, "querySpec.selectTerms: must have at least one entry"),
        (
            ["EXPAND_SELECTED_FIELDS", "EXPAND_CONTENT"],
            {"selectTerms": [{"propertyName": "a"}]},
            "querySpec.options: EXPAND_SELECTED_FIELDS is not compatible with EXPAND_CONTENT",
        ),
        (
            ["EXPAND_SELECTED_FIELDS", "CONTINUOUS"],
            {"selectTerms": [{"propertyName": "a"}]},
            "querySpec.options: EXPAND_SELECTED_FIELDS is not compatible with CONTINUOUS",
        ),
    ],
)
def test_incompatible_options_are_refused(
    tasks: TaskClient, options: list[str], spec: dict[str, Any], message: str
) -> None:
    reply = tasks.http.post(TASKS, json=task_body(kind_query("docs:none"), *options, **spec))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(message)
