"""Xenon's QueryTask JSON as pydantic models, and its validation.

The JSON field names are exactly Xenon's (camelCase, including the misspelt `occurance`); the
Python attributes are their snake_case forms (`query_spec`, `boolean_clauses`, `is_direct`),
and models accept either spelling on input. `parse_query_task` validates a decoded JSON body
and raises `QuerySpecError` whose message starts with the path of the offending field, e.g.
``querySpec.query.booleanClauses[1]: term and booleanClauses are mutually exclusive``.

Tolerance is deliberate and narrow: unknown *top-level* fields of a QueryTask are ignored
(Xenon clients send every ServiceDocument field), but inside `querySpec` an unknown field is
an error, so a typo such as `occurrence` cannot silently change a query's meaning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from fleetwatch.query.phrase import phrase_words
from fleetwatch.query.spec_enums import (
    CONTINUOUS_OPTIONS,
    NUMERIC_SORT_TYPES,
    RANGE_TYPES,
    TEXT_SORT_TYPES,
    MatchType,
    Occurance,
    QueryOption,
    SortOrder,
    TaskStage,
    TypeName,
)

#: Nesting depth of `booleanClauses` allowed (the root query is depth 1).
MAX_QUERY_DEPTH = 16
#: Query nodes (terms and groups) allowed in one query.
MAX_QUERY_CLAUSES = 1024
#: Longest WILDCARD pattern or PHRASE matchValue (characters): with MAX_MATCHED_LENGTH it
#: bounds the work of one term on one value, which every write may pay (issue 14).
MAX_PATTERN_LENGTH = 256
#: Most `*` wildcards in one WILDCARD pattern (a run of `*` counts once).
MAX_WILDCARD_STARS = 16
#: Longest string a WILDCARD or PHRASE term examines (characters); a longer string does not
#: match (so a negated such term is true for it), in memory and in SQL alike.
MAX_MATCHED_LENGTH = 16_384

#: Xenon's path separator and collection item suffix (`tags.item`).
FIELD_SEPARATOR = "."
COLLECTION_ITEM = "item"


class QuerySpecError(ValueError):
    """A QueryTask that cannot be run; the message names the field and what is wrong."""


# --- models --------------------------------------------------------------------------------


def _to_match_value(value: Any) -> Any:
    """Xenon's `toMatchValue`: clients (Gson) may send a number or boolean as matchValue."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


MatchValue = Annotated[str | None, BeforeValidator(_to_match_value)]
Bound = StrictInt | StrictFloat


def _none_to_empty(value: Any) -> Any:
    return {} if value is None else value


class _Model(BaseModel):
    """Xenon JSON: camelCase on the wire, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        use_enum_values=False,
    )


class NumericRange(_Model):
    """A numeric interval; at least one bound. DATE bounds are microseconds since the epoch.

    It matches JSON numbers and numeric-looking strings (osquery's values), compared as
    doubles; `fleetwatch.numeric_text` defines which strings."""

    model_config = ConfigDict(frozen=True)

    type: TypeName | None = None
    min: Bound | None = None
    max: Bound | None = None
    is_min_inclusive: bool = False
    is_max_inclusive: bool = False
    precision_step: int | None = None


class QueryTerm(_Model):
    """One comparison of the value at `propertyName` (a dotted path) with a value or range."""

    model_config = ConfigDict(frozen=True)

    property_name: str | None = None
    property_type: TypeName | None = None
    match_value: MatchValue = None
    match_type: MatchType = MatchType.TERM
    range: NumericRange | None = None
    sort_order: SortOrder | None = None

    @property
    def path(self) -> tuple[str, ...]:
        """The property path split at dots (`a.b.item` -> ("a", "b", "item"))."""
        return tuple((self.property_name or "").split(FIELD_SEPARATOR))


class Query(_Model):
    """A term, or a group of clauses combined by their `occurance`."""

    occurance: Occurance = Occurance.MUST_OCCUR
    term: QueryTerm | None = None
    boolean_clauses: list[Query] | None = None


class QuerySpecification(_Model):
    """The query, its options, paging and sorting (all of Xenon's fields are recognised)."""

    query: Query | None = None
    options: list[QueryOption] = Field(default_factory=list)
    sort_term: QueryTerm | None = None
    sort_order: SortOrder | None = None
    additional_sort_terms: list[QueryTerm] | None = None
    group_by_term: QueryTerm | None = None
    group_sort_term: QueryTerm | None = None
    group_sort_order: SortOrder | None = None
    group_result_limit: int | None = None
    link_terms: list[QueryTerm] | None = None
    select_terms: list[QueryTerm] | None = None
    result_limit: int | None = None
    offset: int | None = None
    expected_result_count: int | None = None
    time_snapshot_boundary_micros: int | None = None

    def has(self, option: QueryOption) -> bool:
        """Whether `option` is set."""
        return option in self.options

    @property
    def is_continuous(self) -> bool:
        """CONTINUOUS or CONTINUOUS_STOP_MATCH."""
        return any(o in CONTINUOUS_OPTIONS for o in self.options)


class ContinuousResult(_Model):
    """Running counters of a COUNT+CONTINUOUS task."""

    model_config = ConfigDict(extra="ignore")

    document_count_added: int = 0
    document_count_updated: int = 0
    document_count_deleted: int = 0


class ServiceDocumentQueryResult(_Model):
    """The results of a query task (or one notification's worth of them)."""

    model_config = ConfigDict(extra="ignore")

    document_links: list[str] | None = None
    documents: dict[str, Any] | None = None
    document_count: int | None = None
    next_page_link: str | None = None
    prev_page_link: str | None = None
    query_time_micros: int | None = None
    continuous_results: ContinuousResult | None = None
    #: GROUP_BY + COUNT: {group value: documents in it} (fleetwatch's, beyond Xenon).
    group_counts: dict[str, int] | None = None


class TaskState(_Model):
    """A task's stage; `failure` is Xenon's ServiceErrorResponse (kept as a JSON object)."""

    model_config = ConfigDict(extra="ignore")

    stage: TaskStage | None = None
    is_direct: bool = False
    failure: dict[str, Any] | None = None
    duration_micros: int | None = None


class QueryTask(_Model):
    """A query task, as POSTed to /core/local-query-tasks and returned by it."""

    # Xenon clients send every ServiceDocument field (documentOwner, documentEpoch, ...).
    model_config = ConfigDict(extra="ignore")

    document_self_link: str | None = None
    document_kind: str | None = None
    document_version: int | None = None
    document_update_time_micros: int | None = None
    document_expiration_time_micros: int | None = None
    task_info: Annotated[TaskState, BeforeValidator(_none_to_empty)] = Field(
        default_factory=TaskState
    )
    query_spec: QuerySpecification | None = None
    results: ServiceDocumentQueryResult | None = None
    index_link: str | None = None
    node_selector_link: str | None = None
    tenant_links: list[str] | None = None
    #: fleetwatch's: changes to one document within this many milliseconds reach
    #: subscribers as one notification (see `fleetwatch.query.squash`).
    squash_millis: int | None = None

    @property
    def spec(self) -> QuerySpecification:
        """The validated querySpec (parse_query_task guarantees it is present)."""
        if self.query_spec is None:
            raise QuerySpecError("querySpec: required")
        return self.query_spec

    @property
    def query(self) -> Query:
        """The validated querySpec.query."""
        query = self.spec.query
        if query is None:
            raise QuerySpecError("querySpec.query: required")
        return query


# --- parsing and validation ----------------------------------------------------------------


def parse_query(raw: object, path: str = "query") -> Query:
    """Validate a decoded Query JSON object on its own (for short forms and tests)."""
    check_size(raw, path)
    try:
        query = Query.model_validate(raw)
    except ValidationError as exc:
        raise QuerySpecError(describe_error(exc, prefix=path)) from None
    validate_query(query, path)
    return query


def validate_query(query: Query, path: str = "query") -> None:
    """Check a query tree: shape, caps against nesting bombs, and every term."""
    count = 0
    stack: list[tuple[Query, str, int]] = [(query, path, 1)]
    while stack:
        node, where, depth = stack.pop()
        count += 1
        if count > MAX_QUERY_CLAUSES:
            raise QuerySpecError(f"{path}: more than {MAX_QUERY_CLAUSES} clauses")
        if depth > MAX_QUERY_DEPTH:
            raise QuerySpecError(f"{where}: nested deeper than {MAX_QUERY_DEPTH} levels")
        if node.term is not None and node.boolean_clauses is not None:
            raise QuerySpecError(f"{where}: term and booleanClauses are mutually exclusive")
        if node.term is not None:
            validate_term(node.term, f"{where}.term")
        elif node.boolean_clauses:
            for i, clause in enumerate(node.boolean_clauses):
                stack.append((clause, f"{where}.booleanClauses[{i}]", depth + 1))
        else:
            raise QuerySpecError(f"{where}: needs a term or a non-empty booleanClauses list")


def validate_term(term: QueryTerm, path: str) -> None:
    """Check one term: a usable property path, and either a matchValue or a range."""
    _validate_property_name(term.property_name, f"{path}.propertyName")
    if term.range is not None:
        if term.match_value is not None:
            raise QuerySpecError(f"{path}: matchValue and range are mutually exclusive")
        if term.match_type is not MatchType.TERM:
            raise QuerySpecError(f"{path}.matchType: a range term must use TERM (or omit it)")
        _validate_range(term.range, f"{path}.range")
        return
    if term.match_value is None:
        raise QuerySpecError(f"{path}: needs a matchValue or a range")
    if term.match_type is MatchType.PHRASE and not phrase_words(term.match_value):
        raise QuerySpecError(f"{path}.matchValue: a PHRASE needs at least one word")
    if term.match_type in (MatchType.WILDCARD, MatchType.PHRASE):
        _validate_pattern(term.match_type, term.match_value, f"{path}.matchValue")


def _validate_pattern(kind: MatchType, value: str, path: str) -> None:
    """Bound the patterns whose matching cost grows with their size (issue 14)."""
    if len(value) > MAX_PATTERN_LENGTH:
        raise QuerySpecError(
            f"{path}: a {kind} matchValue is limited to {MAX_PATTERN_LENGTH} characters "
            f"(this one has {len(value)}); send a shorter pattern or a TERM or PREFIX term"
        )
    stars = len(_STAR_RUN.findall(value)) if kind is MatchType.WILDCARD else 0
    if stars > MAX_WILDCARD_STARS:
        raise QuerySpecError(
            f"{path}: a WILDCARD pattern may have at most {MAX_WILDCARD_STARS} '*' wildcards "
            f"(this one has {stars}); send a pattern with fewer '*'"
        )


_STAR_RUN = re.compile(r"\*+")


def _validate_property_name(name: str | None, path: str) -> None:
    if not name:
        raise QuerySpecError(f"{path}: required")
    parts = name.split(FIELD_SEPARATOR)
    if any(not part for part in parts):
        raise QuerySpecError(f"{path}: {name!r} has an empty path segment")
    if '"' in name:
        # The SQL translation addresses JSON with quoted path labels.
        raise QuerySpecError(f"{path}: {name!r}: a property name cannot contain '\"'")


def _validate_range(rng: NumericRange, path: str) -> None:
    if rng.type is None:
        raise QuerySpecError(f"{path}.type: required (LONG, DOUBLE or DATE)")
    if rng.type not in RANGE_TYPES:
        raise QuerySpecError(
            f"{path}.type: {rng.type} ranges are not supported; use LONG, DOUBLE or DATE"
        )
    if rng.min is None and rng.max is None:
        raise QuerySpecError(f"{path}: needs a min or a max")
    for name, bound in (("min", rng.min), ("max", rng.max)):
        if bound is None:
            continue
        try:
            as_float = float(bound)
        except OverflowError:
            raise QuerySpecError(f"{path}.{name}: {bound} is out of range") from None
        if not math.isfinite(as_float):
            raise QuerySpecError(f"{path}.{name}: must be a finite number")
        if rng.type is not TypeName.DOUBLE and isinstance(bound, float) and not bound.is_integer():
            raise QuerySpecError(f"{path}.{name}: a {rng.type} range needs integer bounds")
    if rng.min is not None and rng.max is not None and float(rng.max) < float(rng.min):
        raise QuerySpecError(f"{path}: max ({rng.max}) is less than min ({rng.min})")


def validate_sort_term(term: QueryTerm, path: str) -> None:
    _validate_property_name(term.property_name, f"{path}.propertyName")
    kind = term.property_type
    if kind is not None and kind not in NUMERIC_SORT_TYPES | TEXT_SORT_TYPES:
        raise QuerySpecError(
            f"{path}.propertyType: sorting by {kind} is not supported by fleetwatch "
            "(use STRING, LONG, DOUBLE or DATE)"
        )


def check_size(raw: object, path: str) -> None:
    """Refuse nesting bombs on the raw JSON, before building models recursively."""
    count = 0
    stack: list[tuple[object, str, int]] = [(raw, path, 1)]
    while stack:
        node, where, depth = stack.pop()
        if not isinstance(node, dict):
            continue
        count += 1
        if count > MAX_QUERY_CLAUSES:
            raise QuerySpecError(f"{path}: more than {MAX_QUERY_CLAUSES} clauses")
        if depth > MAX_QUERY_DEPTH:
            raise QuerySpecError(f"{where}: nested deeper than {MAX_QUERY_DEPTH} levels")
        clauses = node.get("booleanClauses")
        if isinstance(clauses, list):
            for i, clause in enumerate(clauses):
                stack.append((clause, f"{where}.booleanClauses[{i}]", depth + 1))


def describe_error(exc: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as `field.path: what is wrong`."""
    error = exc.errors(include_url=False)[0]
    # Union members add their type name to the location (`range.min.int`): drop those.
    loc = [p for p in error["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
    union = len(loc) != len(error["loc"])
    path = _format_loc(loc, prefix)
    kind = error["type"]
    value = error.get("input")
    if union and kind in ("int_type", "float_type", "int_from_float"):
        message = f"expected a number, got {json_type(value)}"
    elif kind == "enum" and loc and "options" in loc:
        message = f"unknown option {value!r} (known: {', '.join(QueryOption)})"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required"
    else:
        message = str(error["msg"])
        message = message.removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


_UNION_TAGS = frozenset({"int", "float", "str", "bool", "none"})


def _format_loc(loc: list[int | str], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = to_camel(part) if "_" in part else part
            out += f".{name}" if out else name
    return out


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def serialize(task: QueryTask) -> dict[str, Any]:
    """The task as Xenon JSON (camelCase, nulls omitted), ready for a response body."""
    dumped: dict[str, Any] = task.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def iter_terms(query: Query) -> Iterator[QueryTerm]:
    """Every term of a query tree, depth first."""
    stack = [query]
    while stack:
        node = stack.pop()
        if node.term is not None:
            yield node.term
        stack.extend(reversed(node.boolean_clauses or []))
