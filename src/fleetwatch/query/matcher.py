"""The in-memory matcher: does one JSON document satisfy a query?

These are the semantics of every matching path in fleetwatch; `fleetwatch.query.sql`
computes exactly the same answer inside SQLite and PostgreSQL, and the predicate index only
narrows down which queries to ask.

Paths. `propertyName` is split at dots. Each part looks up a key of a JSON object (so `a.b`
is a nested field and `m.key` a map entry). The part `item` applied to a JSON array means
"each element" (`tags.item`, `hosts.item.name`); applied to an object it is an ordinary key.
Any other part applied to something that is not an object finds nothing. A path can thus
reach zero, one or several values; the built-in fields (`documentKind`, `documentSelfLink`,
...) are ordinary top-level fields of the body.

Terms. A term is true when at least one value its path reaches satisfies it; a path that
reaches nothing (a missing field) makes the term false. A negated term (MUST_NOT) is the
negation of that: true for a missing field (Xenon), and for `tags.item` true when no element
matches. Per value:

- TERM (equality): a string equals matchValue exactly (case-sensitive); a boolean's string
  form is "true"/"false" (Xenon's `toMatchValue`); a number (integer or float) matches when
  matchValue is a JSON number literal (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`) with
  the same value as a double (so 7 matches "7" and "7.0"; integers beyond 2**53 compare as
  doubles, as JSON numbers do in JavaScript). null, objects and arrays never match.
- PREFIX: a string that starts with matchValue.
- WILDCARD: a string matching the whole pattern, where `*` is any run of characters, `?`
  exactly one character and every other character is literal (`[`, `+`, `\\` included).
  A JSON null counts as "" (Xenon), so `*` matches a null field but not a missing one.
  Matched by `fleetwatch.query.glob` in time linear in the value (no backtracking).
- PHRASE: a string in which the phrase's words appear consecutively. Words are maximal runs
  of characters other than ASCII separators (every ASCII character except letters, digits
  and `_`); ASCII letters compare case-insensitively, other characters exactly. A phrase
  with no words is refused by validation. (Xenon's filter rejects PHRASE outright.)
- WILDCARD and PHRASE look only at strings of at most MAX_MATCHED_LENGTH characters; a
  longer string does not match. Patterns are bounded by validation (MAX_PATTERN_LENGTH,
  MAX_WILDCARD_STARS), so one term costs at most MAX_MATCHED_LENGTH * MAX_PATTERN_LENGTH
  character comparisons per value, and usually one pass over it.
- range (LONG, DOUBLE, DATE): a number (not a boolean), or a numeric-looking string (osquery
  reports every column as a string; `fleetwatch.numeric_text` defines which strings, e.g.
  "93.5" but not " 93.5" or "12abc"), compared as a double with the bounds and their
  inclusivity; a missing bound is unbounded. DATE values are microseconds since the epoch.
  (Xenon's `createLessThanRange(Double)` bug, a lower bound of Double.MIN_VALUE, is not
  reproduced: there is no implicit bound.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.numeric_text import numeric_value
from fleetwatch.query.dnf import Conjunction, Term, to_dnf
from fleetwatch.query.glob import Glob
from fleetwatch.query.phrase import phrase_haystack, phrase_needle
from fleetwatch.query.spec import (
    COLLECTION_ITEM,
    MAX_MATCHED_LENGTH,
    NumericRange,
    Query,
    QueryTerm,
)
from fleetwatch.query.spec_enums import MatchType

ValuePredicate = Callable[[Any], bool]
#: The key a value has in an equality index: the string form of a string or boolean, or
#: ("#", float) for a number (numbers match by value, strings exactly).
IndexKey = str | tuple[str, float]

_NUMBER_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def number_literal(text: str) -> float | None:
    """The value of a JSON number literal as a finite double, or None if it is not one."""
    if not _NUMBER_LITERAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def is_number(value: Any) -> bool:
    """A JSON number (Python bool is an int, but JSON true is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def value_key(value: Any) -> IndexKey | None:
    """The equality-index key of a document value, or None if no TERM can match it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return ("#", float(value))
    return None


def match_value_keys(match_value: str) -> tuple[IndexKey, ...]:
    """The keys of every value a TERM with this matchValue matches."""
    number = number_literal(match_value)
    if number is None:
        return (match_value,)
    return (match_value, ("#", number))


def values_at(doc: Any, path: Sequence[str]) -> Iterator[Any]:
    """Every value `path` reaches in `doc` (see the module docstring)."""
    if not path:
        yield doc
        return
    part = path[0]
    if isinstance(doc, Mapping):
        if part in doc:
            yield from values_at(doc[part], path[1:])
    elif isinstance(doc, list) and part == COLLECTION_ITEM:
        for element in doc:
            yield from values_at(element, path[1:])


def value_predicate(term: QueryTerm) -> ValuePredicate:
    """A function telling whether one reached value satisfies `term` (before negation)."""
    if term.range is not None:
        return _range_predicate(term.range)
    match_value = term.match_value or ""
    kind = term.match_type
    if kind is MatchType.PREFIX:
        return lambda v: isinstance(v, str) and v.startswith(match_value)
    if kind is MatchType.WILDCARD:
        glob = Glob.compile(match_value)

        def wildcard(v: Any) -> bool:
            if v is None:
                v = ""
            return isinstance(v, str) and len(v) <= MAX_MATCHED_LENGTH and glob.matches(v)

        return wildcard
    if kind is MatchType.PHRASE:
        needle = phrase_needle(match_value)

        def phrase(v: Any) -> bool:
            if not isinstance(v, str) or len(v) > MAX_MATCHED_LENGTH:
                return False
            return needle in phrase_haystack(v)

        return phrase
    number = number_literal(match_value)

    def equals(v: Any) -> bool:
        if isinstance(v, str):
            return v == match_value
        if isinstance(v, bool):
            return ("true" if v else "false") == match_value
        if isinstance(v, int | float):
            return number is not None and float(v) == number
        return False

    return equals


def _range_predicate(rng: NumericRange) -> ValuePredicate:
    lo = None if rng.min is None else float(rng.min)
    hi = None if rng.max is None else float(rng.max)
    lo_incl = rng.is_min_inclusive
    hi_incl = rng.is_max_inclusive

    def in_range(v: Any) -> bool:
        if is_number(v):
            x = float(v)
        elif (parsed := numeric_value(v)) is not None:
            x = parsed
        else:
            return False
        if lo is not None and not (x > lo or (lo_incl and x == lo)):
            return False
        return hi is None or x < hi or (hi_incl and x == hi)

    return in_range


@dataclass(frozen=True, slots=True)
class TermMatcher:
    """A compiled term: its path, its per-value predicate and whether it is negated."""

    term: QueryTerm
    negate: bool
    path: tuple[str, ...]
    predicate: ValuePredicate

    @classmethod
    def compile(cls, term: Term) -> TermMatcher:
        return cls(term.term, term.negate, term.term.path, value_predicate(term.term))

    def matches(self, doc: Mapping[str, Any]) -> bool:
        """The term's truth for `doc`, negation applied."""
        path = self.path
        if len(path) == 1:  # the common case: a top-level field
            key = path[0]
            found = key in doc and self.predicate(doc[key])
        else:
            found = any(self.predicate(v) for v in values_at(doc, path))
        return found != self.negate


@dataclass(frozen=True, slots=True)
class CompiledConjunction:
    """The terms of one conjunction; it matches when all of them do."""

    terms: tuple[TermMatcher, ...]

    def matches(self, doc: Mapping[str, Any]) -> bool:
        return all(t.matches(doc) for t in self.terms)


@dataclass(frozen=True)
class CompiledQuery:
    """A query compiled once: its DNF and a matcher per conjunction."""

    query: Query
    dnf: list[Conjunction]
    conjunctions: tuple[CompiledConjunction, ...] = field(repr=False)

    def matches(self, doc: Mapping[str, Any]) -> bool:
        """Whether the document (a JSON object) satisfies the query."""
        return any(c.matches(doc) for c in self.conjunctions)


def compile_query(query: Query) -> CompiledQuery:
    """Compile a validated query (QuerySpecError if its DNF is too large)."""
    dnf = to_dnf(query)
    conjunctions = tuple(
        CompiledConjunction(tuple(TermMatcher.compile(t) for t in conj)) for conj in dnf
    )
    return CompiledQuery(query=query, dnf=dnf, conjunctions=conjunctions)


__all__ = [
    "CompiledConjunction",
    "CompiledQuery",
    "IndexKey",
    "TermMatcher",
    "compile_query",
    "is_number",
    "match_value_keys",
    "number_literal",
    "value_key",
    "value_predicate",
    "values_at",
]
