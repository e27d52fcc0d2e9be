"""The SQL translation, run for real on SQLite and PostgreSQL, against the in-memory matcher.

The property test draws random documents and random queries, stores the documents through
the DocumentIndex, runs `where_clause` in the database and checks that it selects exactly
the documents the matcher accepts, and that the predicate index picks the same queries.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.dialects import sqlite

from fleetwatch.config import async_database_url
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.query.matcher import compile_query
from fleetwatch.query.predicate_index import PredicateIndex
from fleetwatch.query.spec import MAX_MATCHED_LENGTH, MAX_QUERY_DEPTH, Query, QueryTerm, parse_query
from fleetwatch.query.spec_enums import SortOrder, TypeName
from fleetwatch.query.sql import order_by_clause, where_clause
from fleetwatch.storage import Database, sqlite_functions
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


#: Values with the characters LIKE and GLOB treat specially, and at and over the length cap.
SPECIAL_VALUES: list[Any] = [
    "50%_off [x] *",
    "a]b\\c%d_e[f^!",
    "[!a]",
    "x\\y",
    "x?",
    "é?",
    "The QUICK, brown—fox_2",
    None,
    "a" * MAX_MATCHED_LENGTH,
    "a" * (MAX_MATCHED_LENGTH + 1),
    "quick brown fox " * (MAX_MATCHED_LENGTH // 16),
    "quick brown fox " * (MAX_MATCHED_LENGTH // 16) + "!",
]
SPECIAL_PATTERNS = [
    ("*", "WILDCARD"),
    ("*]*", "WILDCARD"),
    ("*\\*", "WILDCARD"),
    ("*[*", "WILDCARD"),
    ("[!a]", "WILDCARD"),
    ("[!a]*", "WILDCARD"),
    ("*%*", "WILDCARD"),
    ("*_*", "WILDCARD"),
    ("?]b*", "WILDCARD"),
    ("a]b\\c%d_e[f^!", "WILDCARD"),
    ("a]b\\c?d?e[f*", "WILDCARD"),
    ("x\\?", "WILDCARD"),
    ("x\\*", "WILDCARD"),
    ("??", "WILDCARD"),
    ("a*", "WILDCARD"),
    ("*a*a*a*a*a*a*a*a*a*a*a*a*b", "WILDCARD"),
    ("brown fox", "PHRASE"),
    ("QUICK brown", "PHRASE"),
    ("a", "PHRASE"),
    ("fox_2", "PHRASE"),
]


@pytest.mark.parametrize(("pattern", "match_type"), SPECIAL_PATTERNS)
async def test_special_characters_and_the_length_cap_agree(
    index: DocumentIndex, pattern: str, match_type: str
) -> None:
    docs = [{"documentKind": "k1", "v": v} for v in SPECIAL_VALUES]
    prefix, changes = await _store(index, docs, [False] * len(docs))
    for occurance in ("MUST_OCCUR", "MUST_NOT_OCCUR"):
        query = parse_query({"booleanClauses": [_t("v", pattern, match_type, occurance)]})
        compiled = compile_query(query)
        expected = {c.self_link for c in changes if compiled.matches(c.body)}
        assert await _select(index.db, prefix, query) == expected, (pattern, occurance)


async def test_strings_over_the_cap_never_match(index: DocumentIndex) -> None:
    docs = [{"documentKind": "k1", "v": v} for v in SPECIAL_VALUES]
    prefix, _ = await _store(index, docs, [False] * len(docs))
    found = await _select(index.db, prefix, parse_query(_t("v", "a*", "WILDCARD")))
    assert sorted(int(link.rsplit("/", 1)[1]) for link in found) == [1, 8]
    found = await _select(index.db, prefix, parse_query(_t("v", "brown fox", "PHRASE")))
    assert sorted(int(link.rsplit("/", 1)[1]) for link in found) == [10]


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


#: osquery's values are strings; ranges compare the numeric-looking ones as numbers.
OSQUERY_ROWS: list[dict[str, Any]] = [
    {"documentKind": "fleet:log", "cpu": v}
    for v in [
        "93.5",
        "90",
        "7",
        "-3",
        "+95",
        "0095",
        "9.5e1",
        "1E2",
        "120abc",
        " 95",
        "95 ",
        "9.",
        ".95",
        "0x5f",
        "1e100",
        "inf",
        "NaN",
        "",
        "٩٥",
        95,
        True,
        None,
        "12345678901234567890123",
        "99999999999999999999.99999999999999999999e99",
        "-0",
        "1.7976931348623157e308",
    ]
]


@pytest.mark.parametrize(
    "rng, expected",
    [
        ({"min": 90}, [0, 4, 5, 6, 7, 19, 23]),
        ({"min": 90, "isMinInclusive": True}, [0, 1, 4, 5, 6, 7, 19, 23]),
        ({"max": 0, "isMaxInclusive": True}, [3, 24]),
        ({"min": 94.99, "max": 95.01}, [4, 5, 6, 19]),
        ({"min": 1e100}, [23]),
    ],
)
async def test_ranges_compare_numeric_looking_strings(
    index: DocumentIndex, rng: dict[str, Any], expected: list[int]
) -> None:
    prefix, changes = await _store(index, OSQUERY_ROWS, [False] * len(OSQUERY_ROWS))
    query = parse_query(_r("cpu", **rng))
    found = await _select(index.db, prefix, query)
    assert sorted(int(link.rsplit("/", 1)[1]) for link in found) == expected
    compiled = compile_query(query)
    assert {c.self_link for c in changes if compiled.matches(c.body)} == found


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


def _sqlite_steps(path: Path, query: Query, text: str) -> tuple[int, int]:
    """(matches, SQLite VM instructions) of `query` over one document {"v": text}."""
    conn = sqlite3.connect(path)
    try:
        sqlite_functions.register(conn)
        conn.execute("DELETE FROM documents")
        conn.execute(
            "INSERT INTO documents (self_link, kind, version, update_time_micros, "
            "update_action, deleted, body) VALUES ('/d', 'k', 0, 0, 'PUT', 0, ?)",
            (json.dumps({"v": text}),),
        )
        stmt = select(func.count()).select_from(documents).where(where_clause(query, "sqlite"))
        sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        conn.set_progress_handler(count, 1)
        found = conn.execute(sql).fetchone()[0]
        conn.set_progress_handler(None, 0)
        return int(found), steps[0]
    finally:
        conn.close()


def test_sqlite_phrase_work_does_not_grow_with_the_text(tmp_path: Path) -> None:
    """Issue 14: PHRASE on SQLite walked the text character by character in SQL (a 90 KB
    value cost 22 s); now one linear function call does the whole value."""
    path = tmp_path / "phrase.db"
    runner = asyncio.Runner()
    with runner:
        db = Database(async_database_url(f"sqlite:///{path}"))
        runner.run(db.migrate())
        runner.run(db.dispose())
    phrase = parse_query(_t("v", "brown fox", "PHRASE"))
    short = _sqlite_steps(path, phrase, "The quick, brown fox")
    long = _sqlite_steps(path, phrase, "quick " * 2000 + "brown-FOX")
    assert short[0] == long[0] == 1
    assert long[1] == short[1]  # the same VM instructions whatever the length
