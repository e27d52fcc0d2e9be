"""Hypothesis strategies for JSON documents and Xenon queries that often match them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from fleetwatch import numeric_text
from fleetwatch.query.phrase import phrase_words
from fleetwatch.query.spec import (
    MAX_MATCHED_LENGTH,
    MAX_PATTERN_LENGTH,
    NumericRange,
    Query,
    QueryTerm,
    validate_query,
)
from fleetwatch.query.spec_enums import MatchType, Occurance, TypeName

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
    "x]\\[y",
    "a_b%c",
    "[!a]",
]
#: Strings at and just over the length WILDCARD and PHRASE examine.
LONG_STRINGS = ["a b " * (MAX_MATCHED_LENGTH // 4), "a b " * (MAX_MATCHED_LENGTH // 4) + "b"]
PREFIXES = ["", "a", "A", "7", "x y", "hello", "[", "%", "é", "tag"]
PATTERNS = [
    "*",
    "",
    "a*",
    "*b",
    "?",
    "A?b",
    "*[a]*",
    "7*",
    "%*",
    "*_*",
    "a\\*",
    "*o*",
    "??",
    "*]*",
    "[*",
    "*\\*",
    "?_?",
    "*%",
    "\\?",
    "[!a]*",
    "a b*",
    "*a b",
]
#: The characters LIKE and GLOB treat specially, and ours.
PATTERN_CHARACTERS = "ab *?[]%_\\^!-"
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

#: Strings as osquery reports numbers (ranges compare them as numbers), and near misses.
NUMERIC_STRINGS = ["90", "93.5", "+7", "0012", "1E2", "9.5e-1", " 7", "7 ", "7.", ".5", "1e100"]

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
numeric_strings = st.one_of(
    st.sampled_from(NUMERIC_STRINGS), st.from_regex(numeric_text.PATTERN, fullmatch=True)
)
# Mostly values from shared pools, so that queries and documents meet; sometimes anything.
special_text = st.text(alphabet=PATTERN_CHARACTERS, max_size=8)
strings = st.one_of(
    st.sampled_from(STRINGS),
    st.sampled_from(STRINGS),
    text,
    numeric_strings,
    special_text,
    st.sampled_from(LONG_STRINGS),
)
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
    number = numeric_text.numeric_value(value)
    if number is not None and draw(st.booleans()):
        value = number  # a range (or an equality) around a numeric-looking string's value
    if isinstance(value, str) and len(value) > MAX_PATTERN_LENGTH:
        value = value[: MAX_PATTERN_LENGTH - 1]  # a pattern from its start (PREFIX-like)
        if draw(st.booleans()):
            return QueryTerm(
                property_name=path, match_value=value + "*", match_type=MatchType.WILDCARD
            )
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
        MatchType.WILDCARD: st.one_of(st.sampled_from(PATTERNS), text, special_text),
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


def valid(query: Query) -> bool:
    try:
        validate_query(query)
    except ValueError:
        return False
    return True
