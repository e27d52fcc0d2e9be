"""QueryTask JSON: Xenon's shape round-trips, and every invalid spec names its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fleetwatch.query.option_rules import parse_query_task
from fleetwatch.query.phrase import phrase_haystack, phrase_needle, phrase_words
from fleetwatch.query.spec import (
    MAX_PATTERN_LENGTH,
    MAX_QUERY_CLAUSES,
    MAX_QUERY_DEPTH,
    MAX_WILDCARD_STARS,
    QuerySpecError,
    parse_query,
    serialize,
)
from fleetwatch.query.spec_enums import MatchType, Occurance, QueryOption, TaskStage, TypeName

#: The example of the reference (assembled from xenon-workshop and the builder code).
XENON_TASK: dict[str, Any] = {
    "taskInfo": {"isDirect": False},
    "documentExpirationTimeMicros": 9223372036854775807,
    "querySpec": {
        "options": ["CONTINUOUS", "EXPAND_CONTENT"],
        "query": {
            "occurance": "MUST_OCCUR",
            "booleanClauses": [
                {
                    "occurance": "MUST_OCCUR",
                    "term": {
                        "propertyName": "documentKind",
                        "matchValue": "com:vmware:xenon:services:common:ExampleService:"
                        "ExampleServiceState",
                        "matchType": "TERM",
                    },
                },
                {
                    "occurance": "SHOULD_OCCUR",
                    "term": {
                        "propertyName": "name",
                        "matchValue": "*man*",
                        "matchType": "WILDCARD",
                    },
                },
                {
                    "occurance": "MUST_NOT_OCCUR",
                    "term": {
                        "propertyName": "counter",
                        "range": {
                            "type": "LONG",
                            "min": 1,
                            "max": 10,
                            "isMinInclusive": True,
                            "isMaxInclusive": True,
                        },
                    },
                },
            ],
        },
        "resultLimit": 100,
        "sortTerm": {"propertyName": "name", "propertyType": "STRING"},
        "sortOrder": "ASC",
    },
}

#: The seed's continuous query payload, with the fields Xenon clients send.
SEED_TASK: dict[str, Any] = {
    "taskInfo": {"isDirect": False},
    "querySpec": {
        "query": {
            "occurance": "MUST_OCCUR",
            "booleanClauses": [
                {
                    "occurance": "MUST_OCCUR",
                    "term": {
                        "propertyName": "documentKind",
                        "matchValue": "com:vmware:myproject:EmployeeService:Employee",
                        "matchType": "TERM",
                    },
                }
            ],
        },
        "options": ["CONTINUOUS", "EXPAND_CONTENT"],
    },
    "indexLink": "/core/document-index",
    "nodeSelectorLink": "/core/node-selectors/default",
    "documentVersion": 0,
    "documentUpdateTimeMicros": 0,
    "documentExpirationTimeMicros": 0,
    "documentOwner": "host-1",
    "documentEpoch": 0,
}


def test_xenon_example_parses_with_its_fields() -> None:
    task = parse_query_task(XENON_TASK)
    spec = task.spec
    assert spec.options == [QueryOption.CONTINUOUS, QueryOption.EXPAND_CONTENT]
    assert spec.is_continuous and spec.has(QueryOption.EXPAND_CONTENT)
    assert spec.result_limit == 100
    assert spec.sort_term is not None and spec.sort_term.property_type is TypeName.STRING
    clauses = task.query.boolean_clauses
    assert clauses is not None
    assert [c.occurance for c in clauses] == [
        Occurance.MUST_OCCUR,
        Occurance.SHOULD_OCCUR,
        Occurance.MUST_NOT_OCCUR,
    ]
    assert clauses[1].term is not None and clauses[1].term.match_type is MatchType.WILDCARD
    rng = clauses[2].term.range if clauses[2].term else None
    assert rng is not None and rng.min == 1 and rng.max == 10 and rng.is_max_inclusive
    assert task.document_expiration_time_micros == 2**63 - 1


def test_seed_payload_tolerates_extra_top_level_fields_and_round_trips() -> None:
    task = parse_query_task(SEED_TASK)
    out = serialize(task)
    assert "documentOwner" not in out
    assert out["indexLink"] == "/core/document-index"
    assert out["querySpec"]["options"] == ["CONTINUOUS", "EXPAND_CONTENT"]
    clause = out["querySpec"]["query"]["booleanClauses"][0]
    assert clause["occurance"] == "MUST_OCCUR"
    assert clause["term"]["propertyName"] == "documentKind"
    assert parse_query_task(out) == task


def test_serialize_omits_nulls_and_uses_xenon_names() -> None:
    task = parse_query_task(
        {"querySpec": {"query": {"term": {"propertyName": "a", "matchValue": "b"}}}}
    )
    task.task_info.stage = TaskStage.FINISHED
    out = serialize(task)
    assert out["taskInfo"] == {"stage": "FINISHED", "isDirect": False}
    assert out["querySpec"]["query"] == {
        "occurance": "MUST_OCCUR",
        "term": {"propertyName": "a", "matchValue": "b", "matchType": "TERM"},
    }
    assert "results" not in out and "documentSelfLink" not in out


def test_defaults_match_xenon() -> None:
    query = parse_query({"term": {"propertyName": "a", "matchValue": "b"}})
    assert query.occurance is Occurance.MUST_OCCUR
    assert query.term is not None and query.term.match_type is MatchType.TERM
    task = parse_query_task({"taskInfo": None, "querySpec": {"query": query.model_dump()}})
    assert task.task_info.is_direct is False


def test_match_value_sent_as_number_or_boolean_becomes_its_string_form() -> None:
    query = parse_query(
        {
            "booleanClauses": [
                {"term": {"propertyName": "a", "matchValue": 5}},
                {"term": {"propertyName": "b", "matchValue": True}},
            ]
        }
    )
    clauses = query.boolean_clauses or []
    assert [c.term.match_value for c in clauses if c.term] == ["5", "true"]


def _task(query: Any, **spec: Any) -> dict[str, Any]:
    return {"querySpec": {"query": query, **spec}}


TERM = {"term": {"propertyName": "a", "matchValue": "b"}}

INVALID: list[tuple[dict[str, Any], str]] = [
    (
        _task({"booleanClauses": [TERM, {**TERM, "booleanClauses": [TERM]}]}),
        "querySpec.query.booleanClauses[1]: term and booleanClauses are mutually exclusive",
    ),
    (_task({}), "querySpec.query: needs a term or a non-empty booleanClauses list"),
    (
        _task({"booleanClauses": [TERM, {"booleanClauses": []}]}),
        "querySpec.query.booleanClauses[1]: needs a term or a non-empty booleanClauses list",
    ),
    (
        _task({"term": {"propertyName": "n", "range": {"type": "LONG"}}}),
        "querySpec.query.term.range: needs a min or a max",
    ),
    (
        _task({"term": {"propertyName": "n", "range": {"type": "LONG", "min": 5, "max": 4}}}),
        "querySpec.query.term.range: max (4) is less than min (5)",
    ),
    (
        _task({"term": {"propertyName": "n", "range": {"min": 5}}}),
        "querySpec.query.term.range.type: required",
    ),
    (
        _task({"term": {"propertyName": "n", "range": {"type": "STRING", "min": 5}}}),
        "querySpec.query.term.range.type: STRING ranges are not supported",
    ),
    (
        _task({"term": {"propertyName": "n", "range": {"type": "LONG", "min": 1.5}}}),
        "querySpec.query.term.range.min: a LONG range needs integer bounds",
    ),
    (
        _task({"term": {"propertyName": "n", "range": {"type": "LONG", "min": "1"}}}),
        "querySpec.query.term.range.min: expected a number, got a string",
    ),
    (
        _task(
            {"term": {"propertyName": "n", "matchValue": "1", "range": {"type": "LONG", "min": 1}}}
        ),
        "querySpec.query.term: matchValue and range are mutually exclusive",
    ),
    (_task({"term": {"propertyName": "n"}}), "querySpec.query.term: needs a matchValue or a range"),
    (_task({"term": {"matchValue": "x"}}), "querySpec.query.term.propertyName: required"),
    (
        _task({"term": {"propertyName": "a..b", "matchValue": "x"}}),
        "querySpec.query.term.propertyName: 'a..b' has an empty path segment",
    ),
    (
        _task({"term": {"propertyName": "a", "matchValue": " ,; ", "matchType": "PHRASE"}}),
        "querySpec.query.term.matchValue: a PHRASE needs at least one word",
    ),
    (
        _task({"term": {"propertyName": "a", "matchValue": "x", "matchType": "FUZZY"}}),
        "querySpec.query.term.matchType: Input should be",
    ),
    (
        _task({"occurence": "MUST_OCCUR", **TERM}),
        "querySpec.query.occurence: unknown field",
    ),
    (
        _task({"occurance": "MAYBE", **TERM}),
        "querySpec.query.occurance: Input should be",
    ),
    (_task(TERM, options=["CONTINUOS"]), "querySpec.options[0]: unknown option 'CONTINUOS'"),
    (_task(TERM, options="CONTINUOUS"), "querySpec.options: Input should be a valid list"),
    (
        {"taskInfo": {"isDirect": True}, **_task(TERM, options=["CONTINUOUS"])},
        "taskInfo.isDirect: direct query task is not compatible with CONTINUOUS",
    ),
    (
        {"taskInfo": {"isDirect": True}, **_task(TERM, options=["CONTINUOUS_STOP_MATCH"])},
        "taskInfo.isDirect: direct query task is not compatible with CONTINUOUS",
    ),
    (
        _task(TERM, options=["CONTINUOUS", "GROUP_BY"]),
        "querySpec.options: GROUP_BY is not compatible with CONTINUOUS",
    ),
    (
        _task(TERM, options=["CONTINUOUS", "SELECT_LINKS"]),
        "querySpec.options: SELECT_LINKS is not compatible with CONTINUOUS",
    ),
    (
        _task(TERM, options=["COUNT", "EXPAND_CONTENT"]),
        "querySpec.options: EXPAND_CONTENT is not compatible with COUNT",
    ),
    (_task(TERM, options=["SORT"]), "querySpec.sortTerm: required with the SORT option"),
    (
        _task(TERM, options=["SORT"], sortTerm={"propertyName": "a", "propertyType": "MAP"}),
        "querySpec.sortTerm.propertyType: sorting by MAP is not supported by fleetwatch",
    ),
    (_task(TERM, resultLimit=0), "querySpec.resultLimit: must be at least 1"),
    (_task(TERM, resultLimit="ten"), "querySpec.resultLimit: Input should be a valid integer"),
    (_task(TERM, offset=-1), "querySpec.offset: must not be negative"),
    (_task(TERM, frobnicate=1), "querySpec.frobnicate: unknown field"),
    ({"querySpec": {}}, "querySpec.query: required"),
    ({}, "querySpec: required"),
    ({"querySpec": None}, "querySpec: required"),
    ({"querySpec": []}, "querySpec: Input should be a valid dictionary"),
    (
        {"querySpec": {"query": TERM}, "taskInfo": {"stage": "DONE"}},
        "taskInfo.stage: Input should be",
    ),
    (
        {"querySpec": {"query": TERM}, "documentExpirationTimeMicros": "soon"},
        "documentExpirationTimeMicros:",
    ),
]


@pytest.mark.parametrize(("raw", "message"), INVALID)
def test_invalid_specs_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(QuerySpecError) as info:
        parse_query_task(copy.deepcopy(raw))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "option",
    ["BROADCAST", "EXPAND_BINARY_CONTENT", "READ_AFTER_WRITE_CONSISTENCY"],
)
def test_options_fleetwatch_does_not_implement_are_refused(option: str) -> None:
    with pytest.raises(QuerySpecError) as info:
        parse_query_task(_task(TERM, options=["EXPAND_CONTENT", option]))
    assert str(info.value).startswith(
        f"querySpec.options[1]: {option} is not supported by fleetwatch"
    )


def test_expand_links_requires_select_links() -> None:
    with pytest.raises(QuerySpecError, match="EXPAND_LINKS must be combined with SELECT_LINKS"):
        parse_query_task(_task(TERM, options=["EXPAND_LINKS"]))


def test_body_must_be_an_object() -> None:
    with pytest.raises(
        QuerySpecError, match="^body: expected a QueryTask JSON object, got an array"
    ):
        parse_query_task([1])


def _nested(depth: int) -> dict[str, Any]:
    query: dict[str, Any] = TERM
    for _ in range(depth - 1):
        query = {"booleanClauses": [query]}
    return query


def test_nesting_depth_is_capped() -> None:
    parse_query_task(_task(_nested(MAX_QUERY_DEPTH)))
    with pytest.raises(QuerySpecError, match=f"nested deeper than {MAX_QUERY_DEPTH} levels"):
        parse_query_task(_task(_nested(MAX_QUERY_DEPTH + 1)))
    # a bomb far deeper than Python's recursion limit is refused before models are built
    with pytest.raises(QuerySpecError, match="nested deeper"):
        parse_query_task(_task(_nested(5000)))


def test_clause_count_is_capped() -> None:
    wide = {"booleanClauses": [dict(TERM, occurance="SHOULD_OCCUR")] * MAX_QUERY_CLAUSES}
    with pytest.raises(QuerySpecError, match=f"^querySpec.query: more than {MAX_QUERY_CLAUSES}"):
        parse_query_task(_task(wide))
    ok = {"booleanClauses": [dict(TERM, occurance="SHOULD_OCCUR")] * (MAX_QUERY_CLAUSES - 1)}
    parse_query_task(_task(ok))


def _pattern_task(value: str, match_type: str) -> dict[str, Any]:
    term = {"propertyName": "hostname", "matchValue": value, "matchType": match_type}
    return _task({"term": term})


@pytest.mark.parametrize("match_type", ["WILDCARD", "PHRASE"])
def test_pattern_length_is_capped(match_type: str) -> None:
    parse_query_task(_pattern_task("a" * MAX_PATTERN_LENGTH, match_type))
    with pytest.raises(QuerySpecError) as info:
        parse_query_task(_pattern_task("a" * (MAX_PATTERN_LENGTH + 1), match_type))
    assert str(info.value) == (
        f"querySpec.query.term.matchValue: a {match_type} matchValue is limited to "
        f"{MAX_PATTERN_LENGTH} characters (this one has {MAX_PATTERN_LENGTH + 1}); send a "
        "shorter pattern or a TERM or PREFIX term"
    )
    # equality and prefix terms compare in one pass: no cap
    parse_query_task(_pattern_task("a" * (MAX_PATTERN_LENGTH + 1), "TERM"))
    parse_query_task(_pattern_task("a" * (MAX_PATTERN_LENGTH + 1), "PREFIX"))


def test_wildcard_stars_are_capped() -> None:
    parse_query_task(_pattern_task("*a" * MAX_WILDCARD_STARS, "WILDCARD"))
    parse_query_task(_pattern_task("**a" * MAX_WILDCARD_STARS, "WILDCARD"))  # a run counts once
    with pytest.raises(QuerySpecError) as info:
        parse_query_task(_pattern_task("*a" * MAX_WILDCARD_STARS + "*", "WILDCARD"))
    assert str(info.value) == (
        f"querySpec.query.term.matchValue: a WILDCARD pattern may have at most "
        f"{MAX_WILDCARD_STARS} '*' wildcards (this one has {MAX_WILDCARD_STARS + 1}); send a "
        "pattern with fewer '*'"
    )
    # the pattern of issue 14 is harmless now, and allowed
    parse_query_task(_pattern_task("*a*a*a*a*a*a*a*a*a*a*a*a*b", "WILDCARD"))
    # `*` means nothing in a PHRASE (a separator)
    parse_query_task(_pattern_task("*a" * (MAX_WILDCARD_STARS + 1), "PHRASE"))


def test_date_and_double_ranges() -> None:
    query = parse_query(
        {
            "booleanClauses": [
                {
                    "term": {
                        "propertyName": "t",
                        "range": {"type": "DATE", "min": 1_700_000_000_000_000},
                    }
                },
                {"term": {"propertyName": "d", "range": {"type": "DOUBLE", "max": -0.5}}},
                {"term": {"propertyName": "l", "range": {"type": "LONG", "min": 2.0}}},
            ]
        }
    )
    assert query.boolean_clauses is not None and len(query.boolean_clauses) == 3


def test_phrase_normalisation() -> None:
    assert phrase_words("Hello,  World_2 über!") == ["hello", "world_2", "über"]
    assert phrase_haystack("A-b") == " a b "
    assert phrase_needle(" B ") == " b "
    # only ASCII letters fold case
    assert phrase_words("ÉCOLE") == ["École"]
