"""A scope ANDed onto a task's query: the matcher and both SQL backends agree on it, the root's
occurance means nothing, the DNF stays bounded, and a scope round-trips through JSON."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.query.matcher import compile_query
from fleetwatch.query.scope import (
    all_of,
    any_of,
    check_size,
    parse_scope,
    restrict,
    restrict_spec,
    scope_json,
    term,
)
from fleetwatch.query.spec import Query, QuerySpecError, QuerySpecification
from fleetwatch.query.spec_enums import Occurance
from fleetwatch.query.sql import where_clause
from fleetwatch.storage.schema import documents

SCOPE = any_of(all_of(term("documentKind", "k:a"), term("team", 1)), term("documentKind", "k:b"))
DOCS: dict[str, dict[str, Any]] = {
    "/a1": {"documentKind": "k:a", "team": 1, "color": "red"},
    "/a2": {"documentKind": "k:a", "team": 2, "color": "red"},
    "/a3": {"documentKind": "k:a", "color": "red"},
    "/b1": {"documentKind": "k:b", "color": "red"},
    "/b2": {"documentKind": "k:b", "color": "blue"},
    "/c1": {"documentKind": "k:c", "team": 1, "color": "red"},
}


def matching(query: Query) -> set[str]:
    compiled = compile_query(query)
    return {link for link, doc in DOCS.items() if compiled.matches(doc)}


def test_restrict_is_query_and_scope() -> None:
    red = term("color", "red")
    assert matching(restrict(red, SCOPE)) == {"/a1", "/b1"}
    assert matching(restrict(red, None)) == matching(red)
    assert restrict(red, None) is red


def test_the_roots_occurance_is_ignored_as_in_xenon() -> None:
    not_red = term("color", "red").model_copy(update={"occurance": Occurance.MUST_NOT_OCCUR})
    # a root MUST_NOT is a positive term; restricting must not turn it into a negation
    assert matching(not_red) == matching(term("color", "red"))
    assert matching(restrict(not_red, SCOPE)) == {"/a1", "/b1"}


async def test_sql_translation_applies_the_scope_too(index: DocumentIndex) -> None:
    await index.apply(
        [Write(Action.PUT, link, str(doc["documentKind"]), doc) for link, doc in DOCS.items()]
    )
    spec = restrict_spec(QuerySpecification(query=term("color", "red")), SCOPE)
    assert spec.query is not None
    async with index.db.connect() as conn:
        rows = await conn.execute(
            select(documents.c.self_link).where(where_clause(spec.query, index.db.dialect))
        )
        found = {str(r[0]) for r in rows}
    assert found == {"/a1", "/b1"}


def test_restrict_spec_keeps_everything_else() -> None:
    spec = QuerySpecification(query=term("color", "red"), result_limit=5)
    assert restrict_spec(spec, None) is spec
    scoped = restrict_spec(spec, SCOPE)
    assert scoped.result_limit == 5 and scoped.query == restrict(term("color", "red"), SCOPE)
    assert spec.query == term("color", "red")  # the task's own spec is unchanged


def test_a_scoped_query_too_large_for_its_dnf_is_refused() -> None:
    wide = any_of(*(term("x", i) for i in range(100)))
    big_scope = any_of(*(term("y", i) for i in range(100)))
    check_size(wide, None)
    check_size(wide, SCOPE)
    with pytest.raises(QuerySpecError, match="with the scope of what you may see"):
        check_size(wide, big_scope)


def test_scope_round_trips_through_json() -> None:
    assert parse_scope(scope_json(SCOPE)) == SCOPE
    assert parse_scope(None) is None
    with pytest.raises(QuerySpecError, match="scope"):
        parse_scope({"term": {}})


def test_any_of_needs_a_clause() -> None:
    with pytest.raises(ValueError, match="at least one"):
        any_of()
    single = term("a", "b")
    assert any_of(single) is single and all_of(single) is single
