"""DNF construction: the cases of Xenon's TestQueryFilter, De Morgan, and the size cap."""

from __future__ import annotations

import pytest

from fleetwatch.query.dnf import MAX_DNF_CONJUNCTIONS, format_conjunction, to_dnf
from fleetwatch.query.spec import Query, QuerySpecError, QueryTerm
from fleetwatch.query.spec_enums import MatchType, Occurance

MUST = Occurance.MUST_OCCUR
MUST_NOT = Occurance.MUST_NOT_OCCUR
SHOULD = Occurance.SHOULD_OCCUR


def term(name: str, value: str, occurance: Occurance = MUST) -> Query:
    return Query(
        occurance=occurance,
        term=QueryTerm(property_name=name, match_value=value, match_type=MatchType.TERM),
    )


def group(*clauses: Query, occurance: Occurance = MUST) -> Query:
    return Query(occurance=occurance, boolean_clauses=list(clauses))


def dnf_strings(query: Query) -> set[str]:
    return {format_conjunction(c) for c in to_dnf(query)}


def test_simple_disjunction() -> None:
    query = group(term("c1", "v1", SHOULD), term("c2", "v2", SHOULD))
    assert dnf_strings(query) == {"c1=v1", "c2=v2"}
    assert len(to_dnf(query)) == 2


def test_simple_conjunction() -> None:
    query = group(term("c1", "v1", MUST), term("c2", "v2", MUST))
    assert dnf_strings(query) == {"c1=v1 AND c2=v2"}


def test_with_negation() -> None:
    query = group(term("c1", "v1", MUST), term("c2", "v2", MUST_NOT))
    assert dnf_strings(query) == {"c1=v1 AND NOT(c2=v2)"}


def test_must_occur_mixed_with_should_occur_drops_should() -> None:
    query = group(term("c1", "v1", MUST), term("c2", "v2", SHOULD), term("c3", "v3", MUST))
    assert dnf_strings(query) == {"c1=v1 AND c3=v3"}


def test_must_not_mixed_with_should_drops_should() -> None:
    query = group(term("c1", "v1", MUST_NOT), term("c2", "v2", SHOULD))
    assert dnf_strings(query) == {"NOT(c1=v1)"}


def test_simple_disjunction_of_conjunctions() -> None:
    d1 = group(term("c1", "v1"), term("c2", "v2"), occurance=SHOULD)
    d2 = group(term("c3", "v3"), term("c4", "v4"), occurance=SHOULD)
    assert dnf_strings(group(d1, d2)) == {"c1=v1 AND c2=v2", "c3=v3 AND c4=v4"}


def test_simple_conjunction_of_disjunctions() -> None:
    d1 = group(term("c1", "v1", SHOULD), term("c2", "v2", SHOULD), occurance=MUST)
    d2 = group(term("c3", "v3", SHOULD), term("c4", "v4", SHOULD), occurance=MUST)
    assert dnf_strings(group(d1, d2)) == {
        "c1=v1 AND c3=v3",
        "c1=v1 AND c4=v4",
        "c2=v2 AND c3=v3",
        "c2=v2 AND c4=v4",
    }


def test_composed_negation_uses_de_morgan() -> None:
    # c1 AND NOT(c2 AND NOT c3) = (c1 AND NOT c2) OR (c1 AND c3)
    inner = group(term("c2", "v2", MUST), term("c3", "v3", MUST_NOT), occurance=MUST_NOT)
    assert dnf_strings(group(term("c1", "v1"), inner)) == {
        "c1=v1 AND NOT(c2=v2)",
        "c1=v1 AND c3=v3",
    }


def test_negated_disjunction_is_a_conjunction_of_negations() -> None:
    inner = group(term("a", "1", SHOULD), term("b", "2", SHOULD), occurance=MUST_NOT)
    assert dnf_strings(group(term("k", "x"), inner)) == {"NOT(a=1) AND NOT(b=2) AND k=x"}


def test_double_negation_cancels() -> None:
    inner = group(term("a", "1", MUST_NOT), occurance=MUST_NOT)
    assert dnf_strings(group(inner)) == {"a=1"}


def test_composite_field() -> None:
    assert dnf_strings(term("nc1.ns1", "v1")) == {"nc1.ns1=v1"}


def test_root_occurance_is_ignored_as_in_xenon() -> None:
    assert dnf_strings(term("a", "1", MUST_NOT)) == {"a=1"}
    assert dnf_strings(group(term("a", "1"), occurance=SHOULD)) == {"a=1"}


def test_dnf_size_is_capped_before_it_is_built() -> None:
    # an AND of 13 two-way ORs has 2**13 = 8192 conjunctions
    ors = [
        group(term(f"p{i}", "a", SHOULD), term(f"p{i}", "b", SHOULD), occurance=MUST)
        for i in range(13)
    ]
    with pytest.raises(QuerySpecError, match=f"more than {MAX_DNF_CONJUNCTIONS} conjunctions"):
        to_dnf(group(*ors))
    assert len(to_dnf(group(*ors[:12]))) == 4096
