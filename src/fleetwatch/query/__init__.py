"""Continuous and one-shot query tasks: the QueryTask model, DNF, matching, SQL, indexing,
subscriptions, webhooks, plain listings.

A generic engine: may import index/, bus/, storage/, outbound/ and the top-level helpers
(`config`, `periodic`, `numeric_text`); nothing of fleet, live, dispatch, osquery or api.
"""

from fleetwatch.query.dnf import Conjunction, Term, to_dnf
from fleetwatch.query.matcher import CompiledQuery, compile_query
from fleetwatch.query.option_rules import parse_query_task
from fleetwatch.query.predicate_index import PredicateIndex
from fleetwatch.query.spec import (
    NumericRange,
    Query,
    QuerySpecError,
    QuerySpecification,
    QueryTask,
    QueryTerm,
    ServiceDocumentQueryResult,
    TaskState,
    serialize,
)
from fleetwatch.query.spec_enums import (
    MatchType,
    Occurance,
    QueryOption,
    SortOrder,
    TaskStage,
    TypeName,
)
from fleetwatch.query.sql import order_by_clause, where_clause

__all__ = [
    # query-core: model, DNF, matcher, SQL, predicate index
    "CompiledQuery",
    "Conjunction",
    "MatchType",
    "NumericRange",
    "Occurance",
    "PredicateIndex",
    "Query",
    "QueryOption",
    "QuerySpecError",
    "QuerySpecification",
    "QueryTask",
    "QueryTerm",
    "ServiceDocumentQueryResult",
    "SortOrder",
    "TaskStage",
    "TaskState",
    "Term",
    "TypeName",
    "compile_query",
    "order_by_clause",
    "parse_query_task",
    "serialize",
    "to_dnf",
    "where_clause",
]
