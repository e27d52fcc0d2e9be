"""The in-memory matcher: Xenon's TestQueryFilter evaluations and the documented semantics."""

from __future__ import annotations

from typing import Any

import pytest

from fleetwatch.query.matcher import compile_query, match_value_keys, number_literal, value_key
from fleetwatch.query.spec import MAX_MATCHED_LENGTH, NumericRange, Query, QueryTerm
from fleetwatch.query.spec_enums import MatchType, Occurance, TypeName

MUST = Occurance.MUST_OCCUR
MUST_NOT = Occurance.MUST_NOT_OCCUR
SHOULD = Occurance.SHOULD_OCCUR


def term(
    name: str, value: str, occurance: Occurance = MUST, match_type: MatchType = MatchType.TERM
) -> Query:
    return Query(
        occurance=occurance,
        term=QueryTerm(property_name=name, match_value=value, match_type=match_type),
    )


def rng(
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_incl: bool = False,
    hi_incl: bool = False,
    kind: TypeName = TypeName.LONG,
    occurance: Occurance = MUST,
) -> Query:
    return Query(
        occurance=occurance,
        term=QueryTerm(
            property_name=name,
            range=NumericRange(
                type=kind, min=lo, max=hi, is_min_inclusive=lo_incl, is_max_inclusive=hi_incl
            ),
        ),
    )


def group(*clauses: Query, occurance: Occurance = MUST) -> Query:
    return Query(occurance=occurance, boolean_clauses=list(clauses))


def matches(query: Query, doc: dict[str, Any]) -> bool:
    return compile_query(query).matches(doc)


# --- Xenon's TestQueryFilter evaluations -------------------------------------------------


def test_evaluate_simple_disjunction() -> None:
    q = group(term("c1", "v1", SHOULD), term("c2", "v2", SHOULD))
    assert matches(q, {"c1": "v1"})
    assert matches(q, {"c2": "v2"})
    assert not matches(q, {"c3": "v3"})


def test_evaluate_simple_conjunction() -> None:
    q = group(term("c1", "v1"), term("c2", "v2"))
    assert not matches(q, {"c1": "v1"})
    assert not matches(q, {"c2": "v2"})
    assert matches(q, {"c1": "v1", "c2": "v2"})


def test_evaluate_with_negation() -> None:
    q = group(term("c1", "v1"), term("c2", "v2", MUST_NOT))
    assert not matches(q, {"c1": "v1", "c2": "v2"})
    assert matches(q, {"c1": "v1", "c2": "v3"})


def test_evaluate_with_negation_on_unknown_property() -> None:
    q = group(term("c1", "v1"), term("unknownProperty", "v2", MUST_NOT))
    assert not matches(q, {})
    assert matches(q, {"c1": "v1"})


def test_evaluate_disjunction_of_conjunctions() -> None:
    d1 = group(term("c1", "v1"), term("c2", "v2"), occurance=SHOULD)
    d2 = group(term("c3", "v3"), term("c4", "v4"), occurance=SHOULD)
    q = group(d1, d2)
    assert not matches(q, {"c1": "v1"})
    assert not matches(q, {"c2": "v2"})
    assert not matches(q, {"c1": "v1", "c4": "v4"})
    assert not matches(q, {"c2": "v2", "c3": "v3"})
    assert matches(q, {"c1": "v1", "c2": "v2"})
    assert matches(q, {"c3": "v3", "c4": "v4"})


def test_evaluate_conjunction_of_disjunctions() -> None:
    d1 = group(term("c1", "v1", SHOULD), term("c2", "v2", SHOULD))
    d2 = group(term("c3", "v3", SHOULD), term("c4", "v4", SHOULD))
    q = group(d1, d2)
    assert not matches(q, {"c1": "v1"})
    assert not matches(q, {"c2": "v2"})
    for doc in ({"c1": "v1", "c3": "v3"}, {"c1": "v1", "c4": "v4"}, {"c2": "v2", "c3": "v3"}):
        assert matches(q, doc)
    assert matches(q, {"c2": "v2", "c4": "v4"})


def test_evaluate_composed_negation() -> None:
    inner = group(term("c2", "v2"), term("c3", "v3", MUST_NOT), occurance=MUST_NOT)
    q = group(term("c1", "v1"), inner)
    assert matches(q, {"c1": "v1"})  # NOT c2
    assert matches(q, {"c1": "v1", "c2": "v2", "c3": "v3"})  # c3
    assert not matches(q, {"c1": "v1", "c2": "v2"})
    assert not matches(q, {"c2": "x", "c3": "v3"})


def test_evaluate_with_equal_range() -> None:
    q = rng("numeric", 314, 314, lo_incl=True, hi_incl=True)
    assert not matches(q, {"numeric": 315})
    assert matches(q, {"numeric": 314})


def test_evaluate_with_less_than_range() -> None:
    q = rng("numeric", hi=314)
    assert not matches(q, {"numeric": 315})
    assert not matches(q, {"numeric": 314})
    assert matches(q, {"numeric": 313})


def test_less_than_range_matches_negative_values_unlike_xenon() -> None:
    q = rng("d", hi=314.0, kind=TypeName.DOUBLE)
    assert matches(q, {"d": -1.5})
    assert matches(q, {"d": -1e300})


def test_evaluate_with_list_of_string() -> None:
    q = group(term("l1.item", "v2"), term("l2.item", "v3", MUST_NOT))
    doc: dict[str, Any] = {"l1": ["v1"]}
    assert not matches(q, doc)
    doc["l1"].append("v2")
    assert matches(q, doc)
    doc["l2"] = ["v2"]
    assert matches(q, doc)
    doc["l2"].append("v3")
    assert not matches(q, doc)
    doc["l2"] = [None, "v2"]  # a null element is no match
    assert matches(q, doc)


def test_evaluate_with_map_of_string_to_string() -> None:
    q = group(term("m1.k1", "v2"), term("m2.k2", "v3", MUST_NOT))
    doc: dict[str, Any] = {"m1": {"k1": "v1"}}
    assert not matches(q, doc)
    doc["m1"]["k1"] = "v2"
    assert matches(q, doc)
    doc["m2"] = {"k2": "v2"}
    assert matches(q, doc)
    doc["m2"]["k2"] = "v3"
    assert not matches(q, doc)


@pytest.mark.parametrize(
    ("value", "doc_value", "expected"),
    [
        ("RED", "RED", True),  # enum
        ("RED", "BLUE", False),
        ("RED", None, False),
        ("http://www.net.com", "http://www.net.com", True),  # URI
        ("http://www.net.com", "http://www.com.net", False),
        ("true", True, True),  # boolean
        ("true", False, False),
        ("true", None, False),
        ("false", False, True),
    ],
)
def test_evaluate_enum_uri_boolean(value: str, doc_value: Any, expected: bool) -> None:
    assert matches(term("f", value), {"f": doc_value}) is expected


def test_negated_enum_boolean_and_nested_terms_work_unlike_xenon() -> None:
    assert matches(group(term("k", "x"), term("b1", "true", MUST_NOT)), {"k": "x", "b1": False})
    assert matches(group(term("k", "x"), term("nc1.ns1", "v", MUST_NOT)), {"k": "x", "nc1": {}})


def test_evaluate_with_composite_field() -> None:
    q = term("nc1.ns1", "v1")
    assert matches(q, {"nc1": {"ns1": "v1"}})
    assert not matches(q, {"nc1": {"ns1": "v2"}})
    assert not matches(q, {})
    assert not matches(q, {"nc1": None})
    assert not matches(q, {"nc1": "v1"})


def test_match_type_wildcard() -> None:
    def w(pattern: str, value: Any) -> bool:
        doc = {} if value is ... else {"documentSelfLink": value}
        return matches(term("documentSelfLink", pattern, match_type=MatchType.WILDCARD), doc)

    assert w("*", "/test/test.com")
    assert w("*", "\\*a@#$%$^%&%^&/ttt/uri")
    assert w("*", None) and w("*", "")
    assert not w("*", ...)  # a missing field is not null
    assert w("/test*", "/test.com/test")
    assert not w("/test*", "/ttt/uri")
    assert not w("/test*", "aaatestaaa")
    assert w("*test", "/test.com/test")
    assert not w("*test", "/ttt/uri")
    assert not w("*test", "aaatestaaa")
    assert w("*/t?st", "/a/test")
    assert w("*/t?st", "/a/tast")
    assert not w("*/t?st", "/a/tst")
    assert w("abc()*test*", "abc()/test/test.com")
    assert not w("abc()*test*", "/ttt/uri")
    assert w("*[t]est", "/[t]est")  # brackets are literal
    assert not w("*[t]est", "/test")
    assert w("a+", "a+") and not w("a+", "aa")
    assert w("", "")
    assert not w("", "abc()/test/test.com")
    assert not w("", "/ttt/uri")
    assert w("*", None) and not w("?", None)
    assert w("multi*line", "multi\nline")


def test_wildcard_attack_of_issue_14_is_answered() -> None:
    """`.*a.*a...b` backtracked for 26 s on 36 characters; the glob matcher answers at once."""
    q = term("email", "*a*a*a*a*a*a*a*a*a*a*a*a*b", match_type=MatchType.WILDCARD)
    assert not matches(q, {"email": "a" * 64})
    assert not matches(q, {"email": "a" * MAX_MATCHED_LENGTH})
    assert matches(q, {"email": "a" * 63 + "b"})


@pytest.mark.parametrize(
    ("match_type", "pattern"), [(MatchType.WILDCARD, "a*"), (MatchType.PHRASE, "a")]
)
def test_wildcard_and_phrase_ignore_strings_over_the_cap(
    match_type: MatchType, pattern: str
) -> None:
    at_cap = "a " * (MAX_MATCHED_LENGTH // 2)
    over = at_cap + "a"
    assert matches(term("t", pattern, match_type=match_type), {"t": at_cap})
    assert not matches(term("t", pattern, match_type=match_type), {"t": over})
    assert matches(group(term("t", pattern, MUST_NOT, match_type)), {"t": over})
    # the cap is per value: another element of the same list still matches
    assert matches(term("l.item", pattern, match_type=match_type), {"l": [over, "a"]})


def test_match_type_prefix() -> None:
    q = term("documentSelfLink", "/test/", match_type=MatchType.PREFIX)
    assert matches(q, {"documentSelfLink": "/test/a"})
    assert not matches(q, {"documentSelfLink": "/tes"})
    assert not matches(q, {"documentSelfLink": None})
    assert not matches(q, {"documentSelfLink": ""})
    assert not matches(q, {})
    items = term("l.item", "/test/", match_type=MatchType.PREFIX)
    assert matches(items, {"l": ["x", "/test/1"]})
    assert not matches(items, {"l": ["x", "/tes"]})


def test_match_type_phrase_works_in_the_filter() -> None:
    q = term("text", "Quick  brown", match_type=MatchType.PHRASE)
    assert matches(q, {"text": "The quick, BROWN fox"})
    assert matches(q, {"text": "quick-brown"})
    assert not matches(q, {"text": "brown quick"})
    assert not matches(q, {"text": "quickbrown fox"})
    assert not matches(q, {"text": "the quick brownie"})
    assert not matches(q, {"text": 5})
    assert matches(term("t", "été", match_type=MatchType.PHRASE), {"t": "un été chaud"})


def test_term_equality_across_json_types() -> None:
    assert matches(term("n", "7"), {"n": 7})
    assert matches(term("n", "7"), {"n": 7.0})
    assert matches(term("n", "7.0"), {"n": 7})
    assert matches(term("n", "7e0"), {"n": 7})
    assert not matches(term("n", "07"), {"n": 7})  # not a JSON number literal
    assert matches(term("n", "7"), {"n": "7"})
    assert not matches(term("n", "7.0"), {"n": "7"})
    assert matches(term("n", "0.1"), {"n": 0.1})
    assert matches(term("n", "-0"), {"n": 0})
    assert not matches(term("n", "true"), {"n": 1})
    assert not matches(term("n", "1"), {"n": True})
    assert not matches(term("n", "x"), {"n": {"x": 1}})
    assert not matches(term("n", "x"), {"n": ["x"]})  # a list needs `.item`
    assert not matches(term("n", "Ab"), {"n": "ab"})  # TERM is case-sensitive


def test_ranges_match_numbers_and_numeric_looking_strings() -> None:
    q = rng("n", 0, 10, lo_incl=True, hi_incl=True)
    assert matches(q, {"n": 0}) and matches(q, {"n": 10}) and matches(q, {"n": 5.5})
    # osquery's values are strings: a numeric-looking one compares as its number
    for text in ("5", "10", "+0", "-0", "0005", "5.25", "1e1", "9.5E-1", "1.0e+01"):
        assert matches(q, {"n": text}), text
    for text in ("11", "-1", "10.000000000000002", "1e2"):
        assert not matches(q, {"n": text}), text
    for text in (" 5", "5 ", "5.", ".5", "0x5", "5abc", "1,5", "inf", "NaN", "", "1e100", "٥"):
        assert not matches(q, {"n": text}), text
    assert matches(rng("cpu", lo=90), {"cpu": "93.5"})
    assert not matches(rng("cpu", lo=90), {"cpu": "90"})
    assert matches(rng("size", lo=2**64 - 1, lo_incl=True), {"size": "18446744073709551615"})
    assert not matches(q, {"n": True})
    assert not matches(q, {"n": None})
    assert not matches(q, {})
    assert not matches(rng("n", 0, 10), {"n": 0})
    assert matches(rng("n", lo=-1), {"n": 2**62})
    assert matches(
        rng("d", 1_700_000_000_000_000, kind=TypeName.DATE), {"d": 1_800_000_000_000_000}
    )
    items = rng("l.item", 5)
    assert matches(items, {"l": [1, "x", 6]})
    assert matches(items, {"l": [1, "9"]})
    assert not matches(items, {"l": [1, "9 ", "x"]})


def test_item_paths_reach_into_lists_of_objects_and_nested_lists() -> None:
    q = term("hosts.item.name", "a")
    assert matches(q, {"hosts": [{"name": "b"}, {"name": "a"}]})
    assert not matches(q, {"hosts": [{"name": "b"}, "a"]})
    assert matches(term("m.item.item", "x"), {"m": [["y"], ["x"]]})
    # on an object, `item` is an ordinary key
    assert matches(term("o.item", "x"), {"o": {"item": "x"}})
    neg = group(term("k", "1"), term("tags.item", "x", MUST_NOT))
    assert matches(neg, {"k": "1", "tags": []})
    assert matches(neg, {"k": "1"})
    assert not matches(neg, {"k": "1", "tags": ["y", "x"]})


def test_number_literal_and_index_keys() -> None:
    assert number_literal("1e20") == 1e20
    assert number_literal("1e400") is None
    assert number_literal("+1") is None and number_literal("1.") is None
    assert number_literal("٣") is None  # only ASCII digits
    assert value_key(True) == "true" and value_key(3) == ("#", 3.0) and value_key("s") == "s"
    assert value_key(None) is None and value_key([1]) is None
    assert match_value_keys("3.0") == ("3.0", ("#", 3.0))
    assert match_value_keys("x") == ("x",)
