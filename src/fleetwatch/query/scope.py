"""A task's scope: a query ANDed onto the task's own query, so its user sees only what the
scope allows.

The scope is an ordinary `Query`, so the SQL translation (initial and one-shot results), the
in-memory matcher and the predicate index (notifications) all apply it with no mechanism of
their own. It is kept apart from the task's query (GET shows the query as it was sent, and
the scope beside it) and stored with the task, so a restarted server resumes the task with
the same scope. Who gets which scope is decided outside this generic engine (see
`fleetwatch.live.scope`).
"""

from __future__ import annotations

from typing import Any

from fleetwatch.query.dnf import to_dnf
from fleetwatch.query.spec import Query, QuerySpecError, QuerySpecification, QueryTerm, parse_query
from fleetwatch.query.spec_enums import MatchType, Occurance


def term(property_name: str, value: str | int) -> Query:
    """`property_name` equals `value` (a number matches by value, see the matcher)."""
    return Query(term=QueryTerm(property_name=property_name, match_value=str(value)))


def wildcard(property_name: str, pattern: str) -> Query:
    """`property_name` matches the WILDCARD `pattern` (a JSON null counts as "", so `*`
    matches a null field: not a number, not a missing field; see the matcher)."""
    return Query(
        term=QueryTerm(
            property_name=property_name, match_value=pattern, match_type=MatchType.WILDCARD
        )
    )


def all_of(*clauses: Query) -> Query:
    """Every clause holds (one clause is returned as it is)."""
    if len(clauses) == 1:
        return clauses[0]
    return Query(
        boolean_clauses=[c.model_copy(update={"occurance": Occurance.MUST_OCCUR}) for c in clauses]
    )


def any_of(*clauses: Query) -> Query:
    """At least one clause holds (one clause is returned as it is)."""
    if not clauses:
        raise ValueError("any_of needs at least one clause")
    if len(clauses) == 1:
        return clauses[0]
    return Query(
        boolean_clauses=[
            c.model_copy(update={"occurance": Occurance.SHOULD_OCCUR}) for c in clauses
        ]
    )


def none_of(*clauses: Query) -> Query:
    """No clause holds (an AND of negations)."""
    if not clauses:
        raise ValueError("none_of needs at least one clause")
    return Query(
        boolean_clauses=[
            c.model_copy(update={"occurance": Occurance.MUST_NOT_OCCUR}) for c in clauses
        ]
    )


def restrict(query: Query, scope: Query | None) -> Query:
    """`query AND scope` (the query itself without a scope).

    The root's own `occurance` means nothing (Xenon ignores it), so both sides become MUST
    clauses: a root sent as MUST_NOT_OCCUR is not turned into a negation.
    """
    if scope is None:
        return query
    return all_of(query, scope)


def restrict_spec(spec: QuerySpecification, scope: Query | None) -> QuerySpecification:
    """The spec with its query restricted to `scope` (the spec itself without a scope)."""
    if scope is None or spec.query is None:
        return spec
    return spec.model_copy(update={"query": restrict(spec.query, scope)})


def check_size(query: Query, scope: Query | None) -> None:
    """QuerySpecError when the scoped query's DNF is too large to match in memory."""
    if scope is None:
        return
    try:
        to_dnf(restrict(query, scope))
    except QuerySpecError:
        raise QuerySpecError(
            "querySpec.query: with the scope of what you may see (your own campaigns, your "
            "teams' hosts) its "
            "disjunctive normal form is too large; simplify the query"
        ) from None


def scope_json(scope: Query) -> dict[str, Any]:
    """The scope as Xenon Query JSON (stored with the task, shown by GET)."""
    dumped: dict[str, Any] = scope.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def parse_scope(raw: object) -> Query | None:
    """A stored scope (None when the task has none)."""
    if raw is None:
        return None
    return parse_query(raw, "scope")


__all__ = [
    "all_of",
    "any_of",
    "check_size",
    "none_of",
    "parse_scope",
    "restrict",
    "restrict_spec",
    "scope_json",
    "term",
]
