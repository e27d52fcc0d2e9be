"""Which QueryOptions go together and the fields each needs (`fleetwatch.query.option_rules`);
the end-to-end refusals are in the tests of each option (test_group_by, test_links, ...)."""

from __future__ import annotations

from typing import Any

import pytest

from fleetwatch.query.option_rules import parse_query_task
from fleetwatch.query.spec import QuerySpecError
from fleetwatch.query.spec_enums import QueryOption

TERM = {"term": {"propertyName": "a", "matchValue": "b"}}


def _task(query: Any, **spec: Any) -> dict[str, Any]:
    return {"querySpec": {"query": query, **spec}}


NAME = {"propertyName": "name"}


@pytest.mark.parametrize(
    "spec",
    [
        {"options": ["GROUP_BY"], "groupByTerm": NAME, "sortTerm": NAME, "groupResultLimit": 2},
        {"options": ["SELECT_LINKS", "EXPAND_LINKS"], "linkTerms": [NAME]},
        {"options": ["EXPAND_SELECTED_FIELDS"], "selectTerms": [NAME]},
        {"options": ["TIME_SNAPSHOT", "COUNT"], "timeSnapshotBoundaryMicros": 5},
        {"options": ["INCLUDE_ALL_VERSIONS", "EXPAND_CONTENT"]},
        {"options": ["SINGLE_USE"], "resultLimit": 3},
    ],
)
def test_xenons_other_options_are_accepted_with_their_fields(spec: dict[str, Any]) -> None:
    task = parse_query_task(_task(TERM, **spec))
    assert task.spec.options == [QueryOption(o) for o in spec["options"]]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"options": ["GROUP_BY"], "groupByTerm": NAME, "sortTerm": NAME, "groupResultLimit": 0},
            "querySpec.groupResultLimit: must be at least 1",
        ),
        (
            {"options": ["TIME_SNAPSHOT"], "timeSnapshotBoundaryMicros": -1},
            "querySpec.timeSnapshotBoundaryMicros: must not be negative",
        ),
        (
            {"options": ["SINGLE_USE", "CONTINUOUS"]},
            "querySpec.options: SINGLE_USE is not compatible with CONTINUOUS",
        ),
        (
            {"options": ["SELECT_LINKS"], "linkTerms": [{"propertyName": "a..b"}]},
            "querySpec.linkTerms[0].propertyName: a non-empty dotted property name",
        ),
    ],
)
def test_option_fields_are_checked(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(QuerySpecError) as info:
        parse_query_task(_task(TERM, **spec))
    assert str(info.value).startswith(message)
