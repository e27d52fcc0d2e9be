"""A query in disjunctive normal form: an OR of conjunctions (ANDs) of possibly negated terms.

Xenon's rules (`QueryFilter.createDisjunctiveNormalForm`), with De Morgan applied properly
under negation (Xenon's own code negates each clause of a negated group but keeps the AND):

- a term is a one-term conjunction;
- a group with any MUST_OCCUR or MUST_NOT_OCCUR clause is the AND of its MUST clauses and of
  the negations of its MUST_NOT clauses; its SHOULD_OCCUR clauses are dropped;
- a group whose clauses are all SHOULD_OCCUR is their OR;
- the root query's own `occurance` is ignored, as in Xenon (it only qualifies a clause).

The DNF of an AND of ORs grows multiplicatively, so its size is capped.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch.query.spec import Query, QuerySpecError, QueryTerm
from fleetwatch.query.spec_enums import Occurance

#: Conjunctions allowed in one query's DNF.
MAX_DNF_CONJUNCTIONS = 4096


@dataclass(frozen=True, slots=True)
class Term:
    """One term of a conjunction; `negate` means the conjunction needs it to be false."""

    term: QueryTerm
    negate: bool


Conjunction = tuple[Term, ...]


def to_dnf(query: Query) -> list[Conjunction]:
    """The DNF of `query`; QuerySpecError if it has more than MAX_DNF_CONJUNCTIONS."""
    size = _dnf_size(query, negate=False)
    if size > MAX_DNF_CONJUNCTIONS:
        raise QuerySpecError(
            f"querySpec.query: its disjunctive normal form has more than "
            f"{MAX_DNF_CONJUNCTIONS} conjunctions; simplify the query"
        )
    return _dnf(query, negate=False)


def _split(query: Query) -> tuple[list[Query], list[Query], list[Query]]:
    must: list[Query] = []
    must_not: list[Query] = []
    should: list[Query] = []
    for clause in query.boolean_clauses or []:
        if clause.occurance is Occurance.MUST_NOT_OCCUR:
            must_not.append(clause)
        elif clause.occurance is Occurance.SHOULD_OCCUR:
            should.append(clause)
        else:
            must.append(clause)
    return must, must_not, should


def _parts(query: Query, negate: bool) -> tuple[bool, list[tuple[Query, bool]]]:
    """(is_and, [(clause, negate_clause)]) of a group with negation pushed inside."""
    must, must_not, should = _split(query)
    if must or must_not:
        clauses = [(c, negate) for c in must] + [(c, not negate) for c in must_not]
        # NOT(a AND b) = NOT a OR NOT b
        return (not negate), clauses
    return negate, [(c, negate) for c in should]


def _dnf(query: Query, negate: bool) -> list[Conjunction]:
    if query.term is not None:
        return [(Term(query.term, negate),)]
    is_and, clauses = _parts(query, negate)
    if is_and:
        product: list[Conjunction] = [()]
        for clause, neg in clauses:
            product = [left + right for left in product for right in _dnf(clause, neg)]
        return product
    out: list[Conjunction] = []
    for clause, neg in clauses:
        out.extend(_dnf(clause, neg))
    return out


def _dnf_size(query: Query, negate: bool) -> int:
    """The number of conjunctions `_dnf` would build, computed without building them."""
    if query.term is not None:
        return 1
    is_and, clauses = _parts(query, negate)
    if is_and:
        total = 1
        for clause, neg in clauses:
            total *= _dnf_size(clause, neg)
            if total > MAX_DNF_CONJUNCTIONS:
                return total
        return total
    total = 0
    for clause, neg in clauses:
        total += _dnf_size(clause, neg)
        if total > MAX_DNF_CONJUNCTIONS:
            return total
    return total


def format_term(term: Term) -> str:
    """`name=value` or `NOT(name=value)`, as Xenon's tests print terms."""
    t = term.term
    if t.range is not None:
        lo = "[" if t.range.is_min_inclusive else "("
        hi = "]" if t.range.is_max_inclusive else ")"
        value = f"{lo}{_bound(t.range.min)},{_bound(t.range.max)}{hi}"
    else:
        value = t.match_value or ""
        if t.match_type.value != "TERM":
            value = f"{t.match_type.value}:{value}"
    text = f"{t.property_name}={value}"
    return f"NOT({text})" if term.negate else text


def format_conjunction(conjunction: Conjunction) -> str:
    """Terms sorted by property name and joined by AND (Xenon's `Conjunction.toString`)."""
    terms = sorted(conjunction, key=lambda t: t.term.property_name or "")
    return " AND ".join(format_term(t) for t in terms)


def _bound(value: float | None) -> str:
    return "" if value is None else str(value)


__all__ = [
    "Conjunction",
    "MAX_DNF_CONJUNCTIONS",
    "Term",
    "format_conjunction",
    "format_term",
    "to_dnf",
]
