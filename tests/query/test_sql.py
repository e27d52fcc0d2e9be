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
    MatchType,
    NumericRange,
    Occurance,
    Query,
    QueryTerm,
    SortOrder,
    TypeName,
    parse_query,
    phrase_words,
    validate_query,
)
from fleetwatch.query.sql import order_by_clause, where_clause
from fleetwatch.storage import Database
from fleetwatch.storage.schema import documents

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

KEYS = ["a", "b", "o", "tags", "item", "n"]
PATHS = [
    "a",
    "b",
    "n",
    "o",
    "tags",
    "item",
    "o.a",
    "o.item",
    "tags.item",
    "tags.item.a",
    "o.b.item",
    "documentKind",
]
STRINGS = [
    "",
    "a",
    "A",
    "ab",
    "a b",
    "A-b",
    "x y z",
    "7",
    "7.0",
    "-0",
    "1e2",
    "true",
    "false",
    "k1",
    "é",
    "[a]",
    "%_\\",
    "a*b?",
    "hello world",
    "Hello, World!",
    "tag1",
]
PREFIXES = ["", "a", "A", "7", "x y", "hello", "[", "%", "é", "tag"]
PATTERNS = ["*", "", "a*", "*b", "?", "A?b", "*[a]*", "7*", "%*", "*_*", "a\\*", "*o*", "??"]
PHRASES = ["a", "a b", "A B", "b", "hello world", "world!", "x y", "y z", "tag1", "é", "7", "1e2"]
NUMBERS: list[int | float] = [
    0,
    1,
    -1,
    7,
    7.0,
    2.5,
    -0.0,
    0.1,
    100,
    1e16,
    2**53,
    2**53 + 1,
    -(2**63),
    2**63 - 1,
    1e300,
]

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
# Mostly values from shared pools, so that queries and documents meet; sometimes anything.
strings = st.one_of(st.sampled_from(STRINGS), st.sampled_from(STRINGS), text)
numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.sampled_from(NUMBERS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings, strings)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=5,
)
shallow = st.one_of(scalars, scalars, st.lists(scalars, max_size=3), json_values)
json_docs = st.fixed_dictionaries(
    {
        "documentKind": st.sampled_from(["k1", "k2"]),
        "a": shallow,
        "n": st.one_of(numbers, shallow),
        "tags": st.lists(st.one_of(scalars, scalars, json_values), max_size=4),
        "o": st.dictionaries(st.sampled_from(KEYS), shallow, max_size=3),
    },
    optional={"b": shallow, "item": shallow},
)
#: Paths that documents usually have are drawn more often than the rare ones.
paths = st.one_of(
    st.sampled_from(["a", "n", "tags.item", "o.a", "documentKind"]), st.sampled_from(PATHS)
)


Leaf = tuple[str, Any]


def leaves(value: Any, path: str = "") -> list[Leaf]:
    """Every (property path, scalar) in a document, lists walked as `item`."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v, f"{path}.item")]
    return [(path, value)]


@st.composite
def derived_terms(draw: st.DrawFn, seen: Sequence[Leaf]) -> QueryTerm:
    """A term built from a value some document has, so that it often matches."""
    path, value = draw(st.sampled_from(seen))
    if isinstance(value, str):
        kind = draw(st.sampled_from(MatchType))
        if kind is MatchType.PREFIX:
            match = value[: draw(st.integers(0, len(value)))]
        elif kind is MatchType.WILDCARD:
            chars = list(value)
            for i in draw(st.lists(st.integers(0, max(len(chars) - 1, 0)), max_size=2)):
                if chars:
                    chars[i] = draw(st.sampled_from(["?", "*"]))
            match = "".join(chars)
        elif kind is MatchType.PHRASE:
            words = phrase_words(value)
            if not words:
                return QueryTerm(property_name=path, match_value=value)
            start = draw(st.integers(0, len(words) - 1))
            end = draw(st.integers(start + 1, len(words)))
            sep = draw(st.sampled_from([" ", ", ", "-", "  "]))
            match = sep.join(w.upper() if draw(st.booleans()) else w for w in words[start:end])
        else:
            match = value
        return QueryTerm(property_name=path, match_value=match, match_type=kind)
    if isinstance(value, bool) or value is None:
        match = {True: "true", False: "false", None: draw(st.sampled_from(["*", "null"]))}[value]
        kind = MatchType.WILDCARD if match == "*" else MatchType.TERM
        return QueryTerm(property_name=path, match_value=match, match_type=kind)
    if draw(st.booleans()):
        return QueryTerm(
            property_name=path, match_value=draw(st.sampled_from([str(value), repr(float(value))]))
        )
    lo = draw(st.sampled_from([None, value, value - 1]))
    hi = draw(st.sampled_from([None, value, value + 1])) if lo is not None else value
    return QueryTerm(
        property_name=path,
        range=NumericRange(
            type=TypeName.DOUBLE,
            min=lo,
            max=hi,
            is_min_inclusive=draw(st.booleans()),
            is_max_inclusive=draw(st.booleans()),
        ),
    )


@st.composite
def terms(draw: st.DrawFn, seen: Sequence[Leaf] = ()) -> QueryTerm:
    derive: bool = draw(st.booleans())
    if seen and derive:
        return draw(derived_terms(seen))
    path = draw(paths)
    if draw(st.integers(0, 4)) == 0:
        lo = draw(st.one_of(st.none(), numbers))
        hi = draw(st.one_of(st.none(), numbers))
        if lo is None and hi is None:
            lo = 0
        if lo is not None and hi is not None and hi < lo:
            lo, hi = hi, lo
        return QueryTerm(
            property_name=path,
            range=NumericRange(
                type=TypeName.DOUBLE,
                min=lo,
                max=hi,
                is_min_inclusive=draw(st.booleans()),
                is_max_inclusive=draw(st.booleans()),
            ),
        )
    match_type = draw(st.sampled_from(MatchType))
    pool = {
        MatchType.TERM: st.one_of(strings, numbers.map(str), st.sampled_from(["k1", "k2"])),
        MatchType.PREFIX: st.one_of(st.sampled_from(PREFIXES), text),
        MatchType.WILDCARD: st.one_of(st.sampled_from(PATTERNS), text),
        MatchType.PHRASE: st.one_of(st.sampled_from(PHRASES), text),
    }[match_type]
    value = draw(pool)
    if match_type is MatchType.PHRASE and not phrase_words(value):
        value = "a b"
    return QueryTerm(property_name=path, match_value=value, match_type=match_type)


def queries(seen: Sequence[Leaf] = (), depth: int = 3) -> st.SearchStrategy[Query]:
    occurances = st.sampled_from(Occurance)
    leaf = st.builds(lambda t, o: Query(term=t, occurance=o), terms(seen), occurances)
    if depth == 0:
        return leaf
    group = st.builds(
        lambda clauses, o: Query(boolean_clauses=clauses, occurance=o),
        st.lists(queries(seen, depth - 1), min_size=1, max_size=3),
        occurances,
    )
    return st.one_of(leaf, leaf, group)


def _valid(query: Query) -> bool:
    try:
        validate_query(query)
    except ValueError:
        return False
    return True


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
            qs = data.draw(st.lists(queries(seen).filter(_valid), min_size=1, max_size=4))
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
