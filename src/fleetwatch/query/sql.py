"""A query as a SQL WHERE clause over the `documents` table, on SQLite and PostgreSQL.

The clause computes, inside the database, exactly what `fleetwatch.query.matcher` computes
in memory (its module docstring defines the semantics); the property test in
tests/query/test_sql.py checks the two against each other on both backends.

- SQLite: `body` is JSON text; values are reached with `json_type` / `json_extract` and a
  JSON path (`$."a"."b"`), array elements with `json_each` (whose `fullkey` extends the path).
- PostgreSQL: `body` is JSONB; values are reached with `->`, typed with `jsonb_typeof`, read
  as text with `#>> '{}'`, array elements with `jsonb_array_elements`.

Every term becomes a predicate that is TRUE or FALSE, never NULL (it is wrapped in
COALESCE), so that NOT behaves as in Python. The query tree is translated as is (not its
DNF), with the same group rules as `fleetwatch.query.dnf`, so the SQL stays small.

`where_clause` excludes deleted documents unless `include_deleted=True` (the INCLUDE_DELETED
option); callers need not add `documents.c.deleted` themselves. Both functions read the
`documents` table unless given another `table` with its columns (`self_link`, `kind`,
`deleted`, `body`), such as the index as of a past sequence (`fleetwatch.index.history`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Float,
    FromClause,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, JSONB
from sqlalchemy.sql.elements import ColumnElement

from fleetwatch.numeric_text import PG_PATTERN, SQLITE_FUNCTION
from fleetwatch.query.glob import Glob
from fleetwatch.query.matcher import number_literal
from fleetwatch.query.phrase import phrase_needle
from fleetwatch.query.spec import COLLECTION_ITEM, MAX_MATCHED_LENGTH, Query, QueryTerm
from fleetwatch.query.spec_enums import NUMERIC_SORT_TYPES, MatchType, Occurance, SortOrder
from fleetwatch.storage.schema import documents

Bool = ColumnElement[bool]

#: The built-in fields that are also columns (always strings, equal to the body's value).
_COLUMNS = {"documentKind": "kind", "documentSelfLink": "self_link"}

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
#: PHRASE separators as a PostgreSQL regular expression class (ASCII non-word characters).
_PG_SEPARATOR_RUN = r"[\x01-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]+"


def where_clause(
    query: Query,
    dialect: str,
    *,
    include_deleted: bool = False,
    table: FromClause = documents,
) -> Bool:
    """The WHERE clause selecting the documents that match `query` (a validated Query)."""
    nodes = _dialect(dialect, table)
    clause = _query(query, nodes)
    if include_deleted:
        return clause
    return and_(table.c.deleted == false(), clause)


def order_by_clause(
    sort_term: QueryTerm,
    sort_order: SortOrder | None,
    dialect: str,
    *,
    additional: Sequence[QueryTerm] = (),
    table: FromClause = documents,
) -> list[ColumnElement[object]]:
    """ORDER BY expressions for Xenon's sortTerm/sortOrder (and additionalSortTerms).

    LONG, DOUBLE and DATE sort numerically, other types as strings in code point order;
    values of another JSON type and missing values sort last in either direction. The
    document link breaks ties, so pages are stable.
    """
    nodes = _dialect(dialect, table)
    out: list[ColumnElement[object]] = []
    terms = [(sort_term, sort_order)] + [(t, t.sort_order) for t in additional]
    for term, order in terms:
        numeric = term.property_type in NUMERIC_SORT_TYPES
        node = nodes.path(term.path)
        key = nodes.sort_number(node) if numeric else nodes.sort_text(node)
        ordered = key.desc() if order is SortOrder.DESC else key.asc()
        out.append(ordered.nulls_last())
    out.append(table.c.self_link.asc())
    return out


def number_at(
    path: Sequence[str], dialect: str, table: FromClause = documents
) -> ColumnElement[object]:
    """A body field's value where it is a JSON number, else NULL (what a LONG/DOUBLE sort
    term sorts by)."""
    nodes = _dialect(dialect, table)
    return nodes.sort_number(nodes.path(path))


def group_key(
    path: Sequence[str], dialect: str, table: FromClause = documents
) -> tuple[ColumnElement[object], ColumnElement[object]]:
    """What GROUP_BY groups a body by, in SQL: the JSON type (`s`tring, `n`umber, `t`rue or
    `f`alse; NULL for anything else or nothing) and the value (a string's text, a number's
    value or text; NULL otherwise). `fleetwatch.query.group_counts` names the groups."""
    nodes = _dialect(dialect, table)
    node = nodes.path(path)
    kind = case(
        (nodes.is_string(node), literal("s", String)),
        (nodes.is_number(node), literal("n", String)),
        (nodes.is_bool(node, "true"), literal("t", String)),
        (nodes.is_bool(node, "false"), literal("f", String)),
        else_=None,
    )
    value = case((or_(nodes.is_string(node), nodes.is_number(node)), nodes.text(node)), else_=None)
    return kind, value


# --- the query tree ------------------------------------------------------------------------


def _query(query: Query, nodes: _Nodes) -> Bool:
    if query.term is not None:
        return _term(query.term, nodes)
    clauses = query.boolean_clauses or []
    must = [c for c in clauses if c.occurance is Occurance.MUST_OCCUR]
    must_not = [c for c in clauses if c.occurance is Occurance.MUST_NOT_OCCUR]
    if must or must_not:  # SHOULD clauses are dropped, as in the DNF
        parts = [_query(c, nodes) for c in must] + [not_(_query(c, nodes)) for c in must_not]
        return and_(*parts)
    return or_(*[_query(c, nodes) for c in clauses])


def _term(term: QueryTerm, nodes: _Nodes) -> Bool:
    path = term.path
    if (
        len(path) == 1
        and path[0] in _COLUMNS
        and term.range is None
        and term.match_type is MatchType.TERM
    ):
        column_: ColumnElement[str] = nodes.table.c[_COLUMNS[path[0]]]
        return column_ == (term.match_value or "")
    leaf = _leaf_predicate(term, nodes)
    return func.coalesce(_reach(nodes.root(), path, leaf, nodes), false())


def _reach(node: _Node, path: Sequence[str], leaf: Callable[[_Node], Bool], nodes: _Nodes) -> Bool:
    """True when some value `path` reaches from `node` satisfies `leaf`."""
    if not path:
        return leaf(node)
    part, rest = path[0], path[1:]
    by_key = _reach(nodes.key(node, part), rest, leaf, nodes)
    if part != COLLECTION_ITEM:
        return by_key
    return or_(by_key, nodes.any_element(node, lambda e: _reach(e, rest, leaf, nodes)))


def _leaf_predicate(term: QueryTerm, nodes: _Nodes) -> Callable[[_Node], Bool]:
    if term.range is not None:
        rng = term.range
        lo = None if rng.min is None else float(rng.min)
        hi = None if rng.max is None else float(rng.max)

        def in_range(node: _Node) -> Bool:
            # NULL (not a number) fails every bound, and validation requires one
            x = nodes.range_number(node)
            conds: list[Bool] = []
            if lo is not None:
                conds.append(x >= lo if rng.is_min_inclusive else x > lo)
            if hi is not None:
                conds.append(x <= hi if rng.is_max_inclusive else x < hi)
            return and_(*conds)

        return in_range
    value = term.match_value or ""
    kind = term.match_type
    if kind is MatchType.PREFIX:
        return lambda n: and_(nodes.is_string(n), nodes.starts_with(n, value))
    if kind is MatchType.WILDCARD:
        null_matches = Glob.compile(value).matches("")

        def wildcard(node: _Node) -> Bool:
            hit = and_(nodes.is_matchable_string(node), nodes.wildcard(node, value))
            return or_(hit, nodes.is_null(node)) if null_matches else hit

        return wildcard
    if kind is MatchType.PHRASE:
        needle = phrase_needle(value)
        return lambda n: and_(nodes.is_matchable_string(n), nodes.contains_phrase(n, needle))
    number = number_literal(value)

    def equals(node: _Node) -> Bool:
        options: list[Bool] = [and_(nodes.is_string(node), nodes.text(node) == value)]
        if value in ("true", "false"):
            options.append(nodes.is_bool(node, value))
        if number is not None:
            options.append(and_(nodes.is_number(node), nodes.number(node) == number))
        return or_(*options)

    return equals


# --- dialects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """A JSON location: SQLite (root document, path expression), PostgreSQL a jsonb value."""

    expr: ColumnElement[object]
    path: ColumnElement[str] | None = None


class _Nodes:
    """How one dialect reaches, types and compares JSON values (in `table`'s bodies)."""

    def __init__(self, table: FromClause) -> None:
        self.table = table

    def root(self) -> _Node:
        raise NotImplementedError

    def key(self, node: _Node, part: str) -> _Node:
        raise NotImplementedError

    def path(self, parts: Sequence[str]) -> _Node:
        node = self.root()
        for part in parts:
            node = self.key(node, part)
        return node

    def any_element(self, node: _Node, pred: Callable[[_Node], Bool]) -> Bool:
        raise NotImplementedError

    def json_type(self, node: _Node) -> ColumnElement[str]:
        raise NotImplementedError

    def text(self, node: _Node) -> ColumnElement[str]:
        raise NotImplementedError

    def number(self, node: _Node) -> ColumnElement[float]:
        raise NotImplementedError

    def is_string(self, node: _Node) -> Bool:
        raise NotImplementedError

    def is_number(self, node: _Node) -> Bool:
        raise NotImplementedError

    def is_matchable_string(self, node: _Node) -> Bool:
        """A string WILDCARD and PHRASE examine: at most MAX_MATCHED_LENGTH characters."""
        return and_(self.is_string(node), func.length(self.text(node)) <= MAX_MATCHED_LENGTH)

    def is_null(self, node: _Node) -> Bool:
        return self.json_type(node) == "null"

    def is_bool(self, node: _Node, value: str) -> Bool:
        raise NotImplementedError

    def starts_with(self, node: _Node, prefix: str) -> Bool:
        raise NotImplementedError

    def wildcard(self, node: _Node, pattern: str) -> Bool:
        raise NotImplementedError

    def contains_phrase(self, node: _Node, needle: str) -> Bool:
        raise NotImplementedError

    def string_number(self, node: _Node) -> ColumnElement[float]:
        """The value of a string node that is numeric-looking, else NULL."""
        raise NotImplementedError

    def range_number(self, node: _Node) -> ColumnElement[float]:
        """What a range compares: a number, or a numeric-looking string's value; else NULL."""
        return case(
            (self.is_number(node), self.number(node)),
            (self.is_string(node), self.string_number(node)),
            else_=None,
        )

    def sort_number(self, node: _Node) -> ColumnElement[object]:
        return case((self.is_number(node), self.number(node)), else_=None)

    def sort_text(self, node: _Node) -> ColumnElement[object]:
        return case((self.is_string(node), self.text(node)), else_=None)


class _SqliteNodes(_Nodes):
    def root(self) -> _Node:
        return _Node(self.table.c.body, literal("$", String))

    def key(self, node: _Node, part: str) -> _Node:
        assert node.path is not None
        return _Node(node.expr, node.path + literal(f'."{part}"', String))

    def any_element(self, node: _Node, pred: Callable[[_Node], Bool]) -> Bool:
        assert node.path is not None
        each = func.json_each(node.expr, node.path).table_valued(column("fullkey", String))
        element = _Node(node.expr, each.c.fullkey)
        # json_each also walks objects and yields a scalar itself: only arrays count.
        return and_(
            self.json_type(node) == "array",
            # Everything but the elements comes from the enclosing queries (nested items).
            exists(
                select(literal(1)).select_from(each).where(pred(element)).correlate_except(each)
            ),
        )

    def json_type(self, node: _Node) -> ColumnElement[str]:
        return func.json_type(node.expr, node.path, type_=String)

    def _value(self, node: _Node) -> ColumnElement[object]:
        return func.json_extract(node.expr, node.path)

    def text(self, node: _Node) -> ColumnElement[str]:
        return type_coerce(self._value(node), String)

    def number(self, node: _Node) -> ColumnElement[float]:
        return cast(self._value(node), Float)

    def is_string(self, node: _Node) -> Bool:
        return self.json_type(node) == "text"

    def string_number(self, node: _Node) -> ColumnElement[float]:
        # The matcher's own function (registered by fleetwatch.storage on each connection).
        value: ColumnElement[float] = getattr(func, SQLITE_FUNCTION)(self.text(node), type_=Float)
        return value

    def is_number(self, node: _Node) -> Bool:
        return self.json_type(node).in_(["integer", "real"])

    def is_bool(self, node: _Node, value: str) -> Bool:
        return self.json_type(node) == value

    def starts_with(self, node: _Node, prefix: str) -> Bool:
        return func.substr(self.text(node), 1, len(prefix)) == prefix

    def wildcard(self, node: _Node, pattern: str) -> Bool:
        # GLOB: `*` and `?` as ours; `[` opens a class, so it is written as the class `[[]`.
        glob = pattern.replace("[", "[[]")
        return self.text(node).op("GLOB")(literal(glob, String))

    def contains_phrase(self, node: _Node, needle: str) -> Bool:
        # fleetwatch_words is registered on every connection (fleetwatch.storage.sqlite_functions).
        words = func.fleetwatch_words(self.text(node), type_=String)
        haystack = literal(" ", String) + words + literal(" ", String)
        return func.instr(haystack, needle) > 0

    def sort_text(self, node: _Node) -> ColumnElement[object]:
        return case((self.is_string(node), self.text(node)), else_=None)


class _PostgresNodes(_Nodes):
    def root(self) -> _Node:
        return _Node(type_coerce(self.table.c.body, JSONB))

    def key(self, node: _Node, part: str) -> _Node:
        return _Node(node.expr.op("->", return_type=JSONB)(literal(part, String)))

    def any_element(self, node: _Node, pred: Callable[[_Node], Bool]) -> Bool:
        # jsonb_array_elements fails on a non-array: give it an empty array instead.
        array = case(
            (func.jsonb_typeof(node.expr) == "array", node.expr),
            else_=literal_column("'[]'::jsonb", JSONB),
        )
        each = func.jsonb_array_elements(array).table_valued(column("value", JSONB))
        element = _Node(each.c.value)
        return exists(
            select(literal(1)).select_from(each).where(pred(element)).correlate_except(each)
        )

    def json_type(self, node: _Node) -> ColumnElement[str]:
        return func.jsonb_typeof(node.expr, type_=String)

    def text(self, node: _Node) -> ColumnElement[str]:
        return node.expr.op("#>>", return_type=String)(literal_column("'{}'"))

    def number(self, node: _Node) -> ColumnElement[float]:
        # Cast only numbers (a CASE guarantees the order; a cast of text would fail).
        return case(
            (self.is_number(node), cast(self.text(node), DOUBLE_PRECISION)),
            else_=None,
        )

    def is_string(self, node: _Node) -> Bool:
        return self.json_type(node) == "string"

    def string_number(self, node: _Node) -> ColumnElement[float]:
        # The pattern's bounds keep the cast from overflowing; CASE orders check and cast.
        text = self.text(node)
        return case(
            (text.op("~")(literal(PG_PATTERN, String)), cast(text, DOUBLE_PRECISION)),
            else_=None,
        )

    def is_number(self, node: _Node) -> Bool:
        return self.json_type(node) == "number"

    def is_bool(self, node: _Node, value: str) -> Bool:
        return and_(self.json_type(node) == "boolean", self.text(node) == value)

    def starts_with(self, node: _Node, prefix: str) -> Bool:
        return func.starts_with(self.text(node), prefix)

    def wildcard(self, node: _Node, pattern: str) -> Bool:
        like = "".join(
            "%" if ch == "*" else "_" if ch == "?" else "\\" + ch if ch in "%_\\" else ch
            for ch in pattern
        )
        return self.text(node).like(like, escape="\\")

    def contains_phrase(self, node: _Node, needle: str) -> Bool:
        lowered = func.translate(self.text(node), _UPPER, _LOWER)
        words = func.regexp_replace(lowered, _PG_SEPARATOR_RUN, " ", "g")
        haystack = literal(" ", String) + words + literal(" ", String)
        return func.strpos(haystack, needle) > 0

    def sort_text(self, node: _Node) -> ColumnElement[object]:
        return case((self.is_string(node), self.text(node).collate("C")), else_=None)


_DIALECTS: dict[str, type[_Nodes]] = {"sqlite": _SqliteNodes, "postgresql": _PostgresNodes}


def _dialect(name: str, table: FromClause) -> _Nodes:
    try:
        return _DIALECTS[name](table)
    except KeyError:
        raise ValueError(f"unsupported SQL dialect {name!r} (sqlite or postgresql)") from None


__all__ = ["number_at", "order_by_clause", "where_clause"]
