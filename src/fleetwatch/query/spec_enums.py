"""The enumerations of Xenon's QueryTask JSON (its spellings exactly), and which options
fleetwatch runs; `fleetwatch.query.spec` validates a task against them."""

from __future__ import annotations

from enum import StrEnum


class Occurance(StrEnum):
    """How a clause combines with its siblings (Xenon's spelling)."""

    MUST_OCCUR = "MUST_OCCUR"
    MUST_NOT_OCCUR = "MUST_NOT_OCCUR"
    SHOULD_OCCUR = "SHOULD_OCCUR"


class MatchType(StrEnum):
    """How a term's `matchValue` is compared with a document value."""

    WILDCARD = "WILDCARD"
    TERM = "TERM"
    PHRASE = "PHRASE"
    PREFIX = "PREFIX"


class TypeName(StrEnum):
    """Xenon's `ServiceDocumentDescription.TypeName`."""

    LONG = "LONG"
    STRING = "STRING"
    BYTES = "BYTES"
    PODO = "PODO"
    COLLECTION = "COLLECTION"
    MAP = "MAP"
    BOOLEAN = "BOOLEAN"
    DOUBLE = "DOUBLE"
    InternetAddressV4 = "InternetAddressV4"
    InternetAddressV6 = "InternetAddressV6"
    DATE = "DATE"
    URI = "URI"
    ENUM = "ENUM"


#: The range types Xenon's query converter accepts (DATE = microseconds since the epoch).
RANGE_TYPES = frozenset({TypeName.LONG, TypeName.DOUBLE, TypeName.DATE})
#: propertyType values a sort term may have; numeric ones sort numerically.
NUMERIC_SORT_TYPES = frozenset({TypeName.LONG, TypeName.DOUBLE, TypeName.DATE})
TEXT_SORT_TYPES = frozenset({TypeName.STRING, TypeName.ENUM, TypeName.URI})


class SortOrder(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


class TaskStage(StrEnum):
    """Xenon's `TaskState.TaskStage`, in order."""

    CREATED = "CREATED"
    STARTED = "STARTED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class QueryOption(StrEnum):
    """Every `QuerySpecification.QueryOption` of Xenon."""

    CONTINUOUS = "CONTINUOUS"
    CONTINUOUS_STOP_MATCH = "CONTINUOUS_STOP_MATCH"
    COUNT = "COUNT"
    DO_NOT_REFRESH = "DO_NOT_REFRESH"
    TOP_RESULTS = "TOP_RESULTS"
    EXPAND_CONTENT = "EXPAND_CONTENT"
    EXPAND_SELECTED_FIELDS = "EXPAND_SELECTED_FIELDS"
    EXPAND_BINARY_CONTENT = "EXPAND_BINARY_CONTENT"
    EXPAND_BUILTIN_CONTENT_ONLY = "EXPAND_BUILTIN_CONTENT_ONLY"
    EXPAND_LINKS = "EXPAND_LINKS"
    INCLUDE_ALL_VERSIONS = "INCLUDE_ALL_VERSIONS"
    INCLUDE_DELETED = "INCLUDE_DELETED"
    SORT = "SORT"
    TASK = "TASK"
    BROADCAST = "BROADCAST"
    READ_AFTER_WRITE_CONSISTENCY = "READ_AFTER_WRITE_CONSISTENCY"
    OWNER_SELECTION = "OWNER_SELECTION"
    SELECT_LINKS = "SELECT_LINKS"
    GROUP_BY = "GROUP_BY"
    TIME_SNAPSHOT = "TIME_SNAPSHOT"
    SINGLE_USE = "SINGLE_USE"
    INDEXED_METADATA = "INDEXED_METADATA"
    FORWARD_ONLY = "FORWARD_ONLY"


#: Options fleetwatch implements. DO_NOT_REFRESH, TASK, OWNER_SELECTION and INDEXED_METADATA
#: are hints that change nothing here (one shared index, always current), so they are accepted.
SUPPORTED_OPTIONS = frozenset(
    {
        QueryOption.CONTINUOUS,
        QueryOption.CONTINUOUS_STOP_MATCH,
        QueryOption.COUNT,
        QueryOption.EXPAND_CONTENT,
        QueryOption.TOP_RESULTS,
        QueryOption.SORT,
        QueryOption.INCLUDE_DELETED,
        QueryOption.FORWARD_ONLY,
        QueryOption.DO_NOT_REFRESH,
        QueryOption.TASK,
        QueryOption.OWNER_SELECTION,
        QueryOption.INDEXED_METADATA,
        QueryOption.GROUP_BY,
        QueryOption.SELECT_LINKS,
        QueryOption.EXPAND_LINKS,
        QueryOption.EXPAND_SELECTED_FIELDS,
        QueryOption.TIME_SNAPSHOT,
        QueryOption.INCLUDE_ALL_VERSIONS,
        QueryOption.SINGLE_USE,
    }
)
UNSUPPORTED_OPTIONS = frozenset(QueryOption) - SUPPORTED_OPTIONS
CONTINUOUS_OPTIONS = frozenset({QueryOption.CONTINUOUS, QueryOption.CONTINUOUS_STOP_MATCH})
