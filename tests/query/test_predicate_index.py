"""The predicate index: exact answers, candidates limited to what could match, real removal."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.query.matcher import CompiledQuery, compile_query
from fleetwatch.query.predicate_index import PredicateIndex
from fleetwatch.query.spec import parse_query
from tests.query.strategies import json_docs, leaves, queries


def q(raw: dict[str, Any]) -> CompiledQuery:
    return compile_query(parse_query(raw))


def t(name: str, value: str, match_type: str = "TERM", occ: str = "MUST_OCCUR") -> dict[str, Any]:
    return {
        "occurance": occ,
        "term": {"propertyName": name, "matchValue": value, "matchType": match_type},
    }


def kind_and(kind: str, *clauses: dict[str, Any]) -> CompiledQuery:
    return q({"booleanClauses": [t("documentKind", kind), *clauses]})


def test_kind_plus_equality_tasks_do_not_collide() -> None:
    index: PredicateIndex[str] = PredicateIndex()
    for i in range(1000):
        index.add(f"campaign-{i}", kind_and("fleet:result", t("campaignLink", f"/c/{i}")))
    doc = {"documentKind": "fleet:result", "campaignLink": "/c/7", "rows": []}
    assert index.candidates(doc) == {"campaign-7"}
    assert index.match(doc) == {"campaign-7"}
    # the same field value under another kind is no candidate
    assert index.candidates({"documentKind": "fleet:host", "campaignLink": "/c/7"}) == set()
    assert index.always_check_count == 0


def test_equality_without_kind_is_indexed_on_its_field() -> None:
    index: PredicateIndex[int] = PredicateIndex()
    for i in range(200):
        index.add(i, q(t("hostname", f"host-{i}")))
    assert index.candidates({"hostname": "host-3"}) == {3}
    assert index.match({"hostname": "host-3"}) == {3}
    assert index.match({"hostname": "nobody"}) == set()


def test_kind_only_tasks_are_indexed_by_kind() -> None:
    index: PredicateIndex[str] = PredicateIndex()
    index.add(
        "hosts",
        kind_and(
            "fleet:host", {"term": {"propertyName": "mem", "range": {"type": "LONG", "min": 10}}}
        ),
    )
    index.add("labels", q(t("documentKind", "fleet:label")))
    assert index.candidates({"documentKind": "fleet:label"}) == {"labels"}
    assert index.candidates({"documentKind": "fleet:host", "mem": 1}) == {"hosts"}
    assert index.match({"documentKind": "fleet:host", "mem": 1}) == set()
    assert index.match({"documentKind": "fleet:host", "mem": 11}) == {"hosts"}


def test_conjunctions_without_an_equality_go_to_the_always_check_list() -> None:
    index: PredicateIndex[str] = PredicateIndex()
    index.add("negation", q({"booleanClauses": [t("status", "ok", occ="MUST_NOT_OCCUR")]}))
    index.add("wildcard", q(t("name", "web-*", "WILDCARD")))
    index.add("range", q({"term": {"propertyName": "n", "range": {"type": "DOUBLE", "max": 0}}}))
    index.add("indexed", q(t("name", "db")))
    assert index.always_check_count == 3
    doc = {"name": "web-1", "n": -1, "status": "ok"}
    assert index.candidates(doc) == {"negation", "wildcard", "range"}
    assert index.match(doc) == {"wildcard", "range"}
    assert index.match({"name": "db"}) == {"negation", "indexed"}


def test_disjunctions_are_indexed_per_conjunction() -> None:
    index: PredicateIndex[str] = PredicateIndex()
    index.add(
        "in",
        q(
            {
                "booleanClauses": [
                    t("documentKind", "k"),
                    {
                        "booleanClauses": [
                            t("p", "darwin", occ="SHOULD_OCCUR"),
                            t("p", "linux", occ="SHOULD_OCCUR"),
                        ]
                    },
                ]
            }
        ),
    )
    assert index.match({"documentKind": "k", "p": "linux"}) == {"in"}
    assert index.match({"documentKind": "k", "p": "darwin"}) == {"in"}
    assert index.candidates({"documentKind": "k", "p": "windows"}) == set()


def test_collection_items_and_nested_fields_are_indexed() -> None:
    index: PredicateIndex[str] = PredicateIndex()
    index.add("tag", q(t("tags.item", "prod")))
    index.add("nested", q(t("os.name", "ubuntu")))
    assert index.candidates({"tags": ["dev", "prod"]}) == {"tag"}
    assert index.match({"tags": ["dev", "prod"], "os": {"name": "ubuntu"}}) == {"tag", "nested"}
    assert index.candidates({"tags": "prod"}) == set()
    assert index.always_check_count == 0


def test_numbers_and_booleans_are_found_by_value() -> None:
    index: PredicateIndex[str] = PredicateIndex()
    index.add("seven", q(t("n", "7")))
    index.add("true", q(t("b", "true")))
    assert index.match({"n": 7.0}) == {"seven"}
    assert index.match({"n": "7"}) == {"seven"}
    assert index.match({"n": 7.5}) == set()
    assert index.match({"b": True}) == {"true"}
    assert index.match({"b": "true"}) == {"true"}


def test_remove_really_removes_and_add_replaces() -> None:
    index: PredicateIndex[str] = PredicateIndex()
    index.add("a", kind_and("k", t("x", "1")))
    index.add("b", q(t("x", "1")))
    index.add("c", q({"booleanClauses": [t("x", "2", occ="MUST_NOT_OCCUR")]}))
    assert len(index) == 3 and "a" in index
    assert index.remove("a") and index.remove("b") and index.remove("c")
    assert not index.remove("a")
    assert len(index) == 0 and index.entry_count == 0
    assert index.match({"documentKind": "k", "x": "1"}) == set()
    index.add("a", q(t("x", "v1")))
    index.add("a", q(t("x", "v2")))  # replaces the first registration
    assert len(index) == 1 and index.entry_count == 1
    assert index.match({"x": "v1"}) == set()
    assert index.match({"x": "v2"}) == {"a"}
    index.add("n", q(t("x", "2")))  # a number-like value sits under "2" and 2.0
    assert index.entry_count == 3
    assert index.get("a") is not None and index.get("zz") is None
    assert list(index) == ["a", "n"]


@settings(max_examples=150, deadline=None)
@given(docs=st.lists(json_docs, min_size=1, max_size=8), data=st.data())
def test_index_agrees_with_evaluating_every_query(
    docs: list[dict[str, Any]], data: st.DataObject
) -> None:
    seen = [leaf for doc in docs for leaf in leaves(doc)]
    compiled = [
        compile_query(query)
        for query in data.draw(st.lists(queries(seen), min_size=1, max_size=12))
    ]
    index: PredicateIndex[int] = PredicateIndex()
    for i, c in enumerate(compiled):
        index.add(i, c)
    removed = data.draw(st.sets(st.integers(0, len(compiled) - 1)))
    for i in removed:
        index.remove(i)
    for doc in docs:
        linear = {i for i, c in enumerate(compiled) if i not in removed and c.matches(doc)}
        assert index.match(doc) == linear
        assert index.candidates(doc) >= linear
    for i in range(len(compiled)):
        index.remove(i)
    assert index.entry_count == 0
