"""Continuous and one-shot query tasks: the QueryTask model, DNF, matching, SQL, indexing.

A generic engine: it imports nothing of fleet, live, osquery or api.
"""

from fleetwatch.query.dnf import Conjunction, Term, to_dnf
from fleetwatch.query.matcher import CompiledQuery, compile_query
from fleetwatch.query.spec import (
    MatchType,
    NumericRange,
    Occurance,
    Query,
    QueryOption,
    QuerySpecError,
    QuerySpecification,
    QueryTask,
    QueryTerm,
    ServiceDocumentQueryResult,
    SortOrder,
    TaskStage,
    TaskState,
    TypeName,
    parse_query_task,
    serialize,
)

__all__ = [
    # query-core: model, DNF, matcher
    "CompiledQuery",
    "Conjunction",
    "MatchType",
    "NumericRange",
    "Occurance",
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
    "parse_query_task",
    "serialize",
    "to_dnf",
]
