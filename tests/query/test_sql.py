"""The SQL translation, run for real on SQLite and PostgreSQL, against the in-memory matcher.

The property test draws random documents and random queries, stores the documents through
the DocumentIndex, runs `where_clause` in the database and checks that it selects exactly
the documents the matcher accepts, and that the predicate index picks the same queries.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from fleetwatch.config import async_database_url
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.query.matcher import compile_query
from fleetwatch.query.predicate_index import PredicateIndex
from fleetwatch.query.spec import (
    MAX_QUERY_DEPTH,
    Query,
    QueryTerm,
    SortOrder,
    TypeName,
    parse_query,
)
from fleetwatch.query.sql import order_by_clause, where_clause
from fleetwatch.storage import Database
from fleetwatch.storage.schema import documents
from tests.query.strategies import json_docs, leaves, queries, valid

_batch = itertools.count()


async def _store(
    index: DocumentIndex, docs: Sequence[dict[str, Any]], deleted: Sequence[bool]
) -> tuple[str, list[Change]]:
    """PUT the documents under a fresh prefix (then DELETE some); return the final changes."""
    prefix = f"/t/{next(_batch)}/"
    writes = [
        Write(Action.PUT, f"{prefix}{i:03d}", str(doc.get("documentKind", "k1")), doc)
        for i, doc in enumerate(docs)
    ]
    outcomes = await index.apply(writes)
    finals: list[Change] = []
    deletes = []
    for i, (outcome, gone) in enumerate(zip(outcomes, deleted, strict=True)):
        assert isinstance(outcome, Change), outcome
        if gone:
            deletes.append(Write(Action.DELETE, f"{prefix}{i:03d}"))
        finals.append(outcome)
    if deletes:
        by_link = {c.self_link: c for c in await index.apply(deletes) if isinstance(c, Change)}
        finals = [by_link.get(c.self_link, c) for c in finals]
    return prefix, finals


async def _select(
    db: Database, prefix: str, query: Query, *, include_deleted: bool = False
) -> set[str]:
    stmt = select(documents.c.self_link).where(
        documents.c.self_link.startswith(prefix),
        where_clause(query, db.dialect, include_deleted=include_deleted),
    )
    async with db.connect() as conn:
        return {row[0] for row in await conn.execute(stmt)}


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if not k.startswith("document") or k == "documentKind"}


# --- explicit cases ----------------------------------------------------------------------

DOCS: list[dict[str, Any]] = [
    {"documentKind": "k1", "name": "ann", "n": 7, "tags": ["a", "b"], "o": {"x": "1"}},
    {"documentKind": "k1", "name": "bob", "n": 7.5, "tags": [], "o": {"x": 1}, "b": True},
    {"documentKind": "k2", "name": "Ann Lee", "n": "7", "tags": ["c", None], "b": False},
    {"documentKind": "k2", "name": None, "n": -3, "o": {"item": "z"}, "l": [{"a": "q"}]},
    {"documentKind": "k1", "name": "50%_off [x] *", "n": 2**53 + 1, "l": [["q"], "r"]},
    {"documentKind": "k1", "text": "The QUICK brown-fox; jumps", "n": 1e16},
]


def _t(name: str, value: str, match_type: str = "TERM", occ: str = "MUST_OCCUR") -> dict[str, Any]:
    return {
        "occurance": occ,
        "term": {"propertyName": name, "matchValue": value, "matchType": match_type},
    }


def _r(name: str, **rng: Any) -> dict[str, Any]:
    return {"term": {"propertyName": name, "range": {"type": "DOUBLE", **rng}}}


CASES: list[dict[str, Any]] = [
    _t("documentKind", "k1"),
    _t("name", "ann"),
    _t("n", "7"),
    _t("n", "7.0"),
    _t("n", "9007199254740993"),
    _t("n", "1e16"),
    _t("b", "true"),
    _t("b", "false"),
    _t("tags.item", "a"),
    {"booleanClauses": [_t("documentKind", "k1"), _t("tags.item", "a", occ="MUST_NOT_OCCUR")]},
    _t("o.x", "1"),
    _t("o.item", "z"),
    _t("l.item.a", "q"),
    _t("l.item.item", "q"),
    _t("l.item", "r"),
    _t("name", "an", "PREFIX"),
    _t("name", "", "PREFIX"),
    _t("name", "*", "WILDCARD"),
    _t("name", "?nn*", "WILDCARD"),
    _t("name", "50%_off [x] \\*", "WILDCARD"),
    _t("name", "50%_off [x] *", "WILDCARD"),
    _t("name", "*[x]*", "WILDCARD"),
    _t("name", "ann lee", "PHRASE"),
    _t("text", "quick Brown fox", "PHRASE"),
    _t("text", "brown fox jumps!", "PHRASE"),
    _t("text", "quick fox", "PHRASE"),
    _r("n", min=7, isMinInclusive=True),
    _r("n", max=0),
    _r("n", min=7, max=7.5),
    {"term": {"propertyName": "n", "range": {"type": "LONG", "min": -3, "max": 7}}},
    {
        "term": {
            "propertyName": "n",
            "range": {"type": "DATE", "min": 10**15, "isMinInclusive": True},
        }
    },
    {
        "term": {
            "propertyName": "n",
            "range": {"type": "LONG", "min": 2**53, "isMinInclusive": True},
        }
    },
    {
        "booleanClauses": [
            _t("name", "ann", occ="SHOULD_OCCUR"),
            _t("name", "bob", occ="SHOULD_OCCUR"),
        ]
    },
    {"booleanClauses": [_t("name", "ann", occ="MUST_NOT_OCCUR")]},
    {
        "booleanClauses": [
            _t("documentKind", "k1"),
            {
                "occurance": "MUST_NOT_OCCUR",
                "booleanClauses": [_t("name", "ann"), _t("n", "7", occ="MUST_NOT_OCCUR")],
            },
        ]
    },
]


@pytest.mark.parametrize("case", range(len(CASES)))
async def test_where_clause_agrees_with_matcher(index: DocumentIndex, case: int) -> None:
    query = parse_query(CASES[case])
    deleted = [False, False, False, False, False, True]
    prefix, changes = await _store(index, DOCS, deleted)
    compiled = compile_query(query)
    expected = {
        c.self_link
        for c, gone in zip(changes, deleted, strict=True)
        if not gone and compiled.matches(c.body)
    }
    assert await _select(index.db, prefix, query) == expected
    with_deleted = {c.self_link for c in changes if compiled.matches(c.body)}
    assert await _select(index.db, prefix, query, include_deleted=True) == with_deleted


async def test_a_few_answers_by_hand(index: DocumentIndex) -> None:
    prefix, _ = await _store(index, DOCS, [False] * len(DOCS))

    async def links(raw: dict[str, Any]) -> list[int]:
        found = await _select(index.db, prefix, parse_query(raw))
        return sorted(int(link.rsplit("/", 1)[1]) for link in found)

    assert await links(_t("n", "7")) == [0, 2]
    assert await links(_t("tags.item", "a")) == [0]
    assert await links(_t("name", "*", "WILDCARD")) == [0, 1, 2, 3, 4]
    assert await links(_t("name", "ann lee", "PHRASE")) == [2]
    assert await links(_r("n", max=0)) == [3]
    assert await links(
        {"booleanClauses": [_t("documentKind", "k1"), _t("tags.item", "a", occ="MUST_NOT_OCCUR")]}
    ) == [1, 4, 5]


async def test_order_by_clause(index: DocumentIndex) -> None:
    docs: list[dict[str, Any]] = [
        {"documentKind": "s", "v": "b", "n": 10},
        {"documentKind": "s", "v": "B", "n": 9.5},
        {"documentKind": "s", "v": "a", "n": -1},
        {"documentKind": "s", "v": 3, "n": "x"},
        {"documentKind": "s"},
        {"documentKind": "s", "v": "é", "n": 100},
    ]
    prefix, _ = await _store(index, docs, [False] * len(docs))
    db = index.db

    async def order(term: QueryTerm, direction: SortOrder) -> list[int]:
        stmt = (
            select(documents.c.self_link)
            .where(documents.c.self_link.startswith(prefix))
            .order_by(*order_by_clause(term, direction, db.dialect))
        )
        async with db.connect() as conn:
            return [int(r[0].rsplit("/", 1)[1]) for r in await conn.execute(stmt)]

    text = QueryTerm(property_name="v", property_type=TypeName.STRING)
    number = QueryTerm(property_name="n", property_type=TypeName.LONG)
    # code point order (B < a < b < é), other types and missing values last, ties by link
    assert await order(text, SortOrder.ASC) == [1, 2, 0, 5, 3, 4]
    assert await order(text, SortOrder.DESC) == [5, 0, 2, 1, 3, 4]
    assert await order(number, SortOrder.ASC) == [2, 1, 0, 5, 3, 4]
    assert await order(number, SortOrder.DESC) == [5, 0, 1, 2, 3, 4]


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported SQL dialect 'mysql'"):
        where_clause(parse_query(_t("a", "b")), "mysql")


# --- the property test -------------------------------------------------------------------


def test_sql_matcher_and_predicate_index_agree(database_url: str) -> None:
    """For random documents and queries, all three paths select the same documents.

    A sync test driving its own event loop: hypothesis runs many examples against one
    migrated database (per backend), each example under a fresh link prefix.
    """
    runner = asyncio.Runner()
    with runner:
        db = Database(async_database_url(database_url))
        runner.run(db.migrate())
        index = DocumentIndex(db)
        runner.run(index.start())

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            docs=st.lists(json_docs, min_size=1, max_size=12),
            deleted=st.lists(st.booleans(), min_size=12, max_size=12),
            data=st.data(),
        )
        def check(docs: list[dict[str, Any]], deleted: list[bool], data: st.DataObject) -> None:
            seen = [leaf for doc in docs for leaf in leaves(doc)]
            qs = data.draw(st.lists(queries(seen).filter(valid), min_size=1, max_size=4))
            runner.run(_check(index, docs, deleted[: len(docs)], qs))

        try:
            check()
        finally:
            runner.run(db.dispose())


async def _check(
    index: DocumentIndex, docs: list[dict[str, Any]], deleted: list[bool], qs: list[Query]
) -> None:
    prefix, changes = await _store(index, docs, deleted)
    compiled = [compile_query(q) for q in qs]
    pindex: PredicateIndex[int] = PredicateIndex()
    for i, c in enumerate(compiled):
        pindex.add(i, c)
    for i, (query, c) in enumerate(zip(qs, compiled, strict=True)):
        expected_all = {ch.self_link for ch in changes if c.matches(ch.body)}
        live = {ch.self_link for ch, gone in zip(changes, deleted, strict=True) if not gone}
        got = await _select(index.db, prefix, query)
        assert got == expected_all & live, (
            query.model_dump(exclude_none=True),
            [_strip(ch.body) for ch in changes],
        )
        got_all = await _select(index.db, prefix, query, include_deleted=True)
        assert got_all == expected_all
        by_index = {ch.self_link for ch in changes if i in pindex.match(ch.body)}
        assert by_index == expected_all


async def test_deepest_allowed_query_runs_on_both_backends(index: DocumentIndex) -> None:
    """A query nested to the depth cap still compiles to SQL the database can parse."""
    prefix, changes = await _store(index, DOCS, [False] * len(DOCS))
    leaf = _t("l.item.item", "q")
    query: dict[str, Any] = {
        "booleanClauses": [_t("text", "quick brown", "PHRASE", "SHOULD_OCCUR"), leaf]
    }
    for level in range(MAX_QUERY_DEPTH - 2):
        occurance = "MUST_NOT_OCCUR" if level % 2 else "MUST_OCCUR"
        query = {
            "booleanClauses": [
                {**query, "occurance": occurance},
                _t("tags.item", "zz", "WILDCARD", "MUST_NOT_OCCUR"),
            ]
        }
    parsed = parse_query(query)
    compiled = compile_query(parsed)
    expected = {c.self_link for c in changes if compiled.matches(c.body)}
    assert await _select(index.db, prefix, parsed) == expected
    assert expected  # the query is not vacuous
