"""GROUP_BY: a query's results split by the value of `groupByTerm`, one first page per group.

As in Xenon, the task's results hold `nextPageLinksPerGroup` ({group value: link of the
first page of that group's documents}); each group's documents are in `sortTerm` order
(required) and paged by `resultLimit` like any other result. Group values are strings:
a string is itself, a number or boolean its JSON text (Xenon's `toMatchValue`), and the
documents without a scalar value there form the group `DocumentsWithoutResults`. Groups are
ordered by `groupSortTerm`/`groupSortOrder` (numerically when its type is LONG, DOUBLE or
DATE), else by value, that group last; at most `groupResultLimit` groups per page (Xenon's
default 10,000 without it), the next groups behind `nextPageLink`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fleetwatch.query.links import value_at
from fleetwatch.query.option_rules import DEFAULT_GROUP_LIMIT
from fleetwatch.query.spec import QuerySpecification
from fleetwatch.query.spec_enums import NUMERIC_SORT_TYPES, SortOrder

#: Xenon's LuceneDocumentIndexService.DOCUMENTS_WITHOUT_RESULTS.
WITHOUT_VALUE = "DocumentsWithoutResults"


def group_value(body: Mapping[str, Any] | None, name: str) -> str:
    """The group a document belongs to."""
    value = None if body is None else value_at(body, name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return WITHOUT_VALUE


def group_entries(
    entries: Sequence[str], bodies: Mapping[str, Mapping[str, Any]], name: str
) -> dict[str, list[str]]:
    """{group value: its entries, in result order}."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        groups.setdefault(group_value(bodies.get(entry), name), []).append(entry)
    return groups


def ordered_groups(values: Sequence[str], spec: QuerySpecification) -> list[str]:
    """Group values in groupSortTerm/groupSortOrder order (the valueless group last)."""
    term = spec.group_sort_term or spec.group_by_term
    numeric = term is not None and term.property_type in NUMERIC_SORT_TYPES
    descending = spec.group_sort_order is SortOrder.DESC

    def key(value: str) -> tuple[int, float, str]:
        if numeric:
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isnan(number):
                return (0, -number if descending else number, "")
            return (1, 0.0, value)
        return (0, 0.0, value)

    valued = [v for v in values if v != WITHOUT_VALUE]
    if numeric:
        out = sorted(valued, key=key)
    else:
        out = sorted(valued, reverse=descending)
    if WITHOUT_VALUE in values:
        out.append(WITHOUT_VALUE)
    return out


def group_limit(spec: QuerySpecification) -> int:
    """Groups per page."""
    return spec.group_result_limit or DEFAULT_GROUP_LIMIT
