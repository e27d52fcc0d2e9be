"""Which QueryTasks are valid: parsing a body, and which QueryOptions go together and the
fields each needs (Xenon's validateState).

The messages say what Xenon's say (`GROUP_BY is not compatible with COUNT`, `querySpec.sortTerm
is required with GROUP_BY`, ...), prefixed with the field to change and followed by what to
send instead. Options fleetwatch runs only one-shot (SELECT_LINKS, as in Xenon, and
INCLUDE_ALL_VERSIONS, EXPAND_SELECTED_FIELDS, SINGLE_USE, whose results are a snapshot) are
refused with CONTINUOUS and CONTINUOUS_STOP_MATCH. Beyond Xenon: GROUP_BY goes with COUNT
(`groupCounts`, and live with CONTINUOUS), TIME_SNAPSHOT with CONTINUOUS (the results as of
the boundary, then every change after it), and a task may set `squashMillis`.
"""

from __future__ import annotations

from pydantic import ValidationError

from fleetwatch.query.spec import (
    QuerySpecError,
    QuerySpecification,
    QueryTask,
    QueryTerm,
    check_size,
    describe_error,
    json_type,
    validate_query,
    validate_sort_term,
)
from fleetwatch.query.spec_enums import (
    CONTINUOUS_OPTIONS,
    SUPPORTED_OPTIONS,
    UNSUPPORTED_OPTIONS,
    QueryOption,
)

#: Xenon's LuceneDocumentIndexService default number of groups per GROUP_BY page.
DEFAULT_GROUP_LIMIT = 10_000

#: The longest `squashMillis` (a minute): longer would hide a document for too long.
MAX_SQUASH_MILLIS = 60_000

#: Options whose results are one snapshot: a continuous task cannot have them (yet).
ONE_SHOT_ONLY = (
    QueryOption.SELECT_LINKS,
    QueryOption.INCLUDE_ALL_VERSIONS,
    QueryOption.EXPAND_SELECTED_FIELDS,
    QueryOption.SINGLE_USE,
)


def validate_options(task: QueryTask) -> None:
    """Raise QuerySpecError for a combination of options Xenon (or fleetwatch) refuses."""
    spec = task.spec
    options = set(spec.options)
    continuous = sorted(options & CONTINUOUS_OPTIONS)
    if continuous and task.task_info.is_direct:
        raise QuerySpecError(
            "taskInfo.isDirect: direct query task is not compatible with CONTINUOUS or "
            "CONTINUOUS_STOP_MATCH (send isDirect false and read the results from the task)"
        )
    for option in ONE_SHOT_ONLY:
        if continuous and option in options:
            xenon = option is QueryOption.SELECT_LINKS
            why = "as in Xenon" if xenon else "fleetwatch runs it as a one-shot query only"
            raise QuerySpecError(
                f"querySpec.options: {option} is not compatible with {continuous[0]} ({why}); "
                f"drop {continuous[0]} for a one-shot query, or {option} for a continuous one"
            )
    if continuous and QueryOption.GROUP_BY in options and QueryOption.COUNT not in options:
        raise QuerySpecError(
            f"querySpec.options: GROUP_BY is not compatible with {continuous[0]} without COUNT "
            "(as in Xenon); add COUNT for live group counts (results.groupCounts), or drop "
            f"{continuous[0]} for grouped pages"
        )
    for option in (QueryOption.EXPAND_CONTENT, QueryOption.SELECT_LINKS):
        if option in options and QueryOption.COUNT in options:
            raise QuerySpecError(
                f"querySpec.options: {option} is not compatible with COUNT "
                f"(drop COUNT, or {option})"
            )
    if QueryOption.EXPAND_LINKS in options and QueryOption.SELECT_LINKS not in options:
        raise QuerySpecError(
            "querySpec.options: EXPAND_LINKS must be combined with SELECT_LINKS "
            "(add SELECT_LINKS and querySpec.linkTerms)"
        )
    _group_by(spec, options)
    _select(spec, options)
    _time(spec, options)
    _squash(task, bool(continuous))


def _group_by(spec: QuerySpecification, options: set[QueryOption]) -> None:
    if QueryOption.GROUP_BY not in options:
        for name, value in (
            ("groupByTerm", spec.group_by_term),
            ("groupSortTerm", spec.group_sort_term),
            ("groupResultLimit", spec.group_result_limit),
        ):
            if value is not None:
                raise QuerySpecError(
                    f"querySpec.{name}: only used with the GROUP_BY option (add GROUP_BY "
                    f"or drop {name})"
                )
        return
    if spec.group_by_term is None:
        raise QuerySpecError(
            'querySpec.groupByTerm: is required with GROUP_BY (e.g. {"propertyName": "team"})'
        )
    if spec.sort_term is None and QueryOption.COUNT not in options:
        raise QuerySpecError(
            "querySpec.sortTerm: is required with GROUP_BY (it orders each group's documents; "
            'e.g. {"propertyName": "documentSelfLink", "propertyType": "STRING"})'
        )
    _check_name(spec.group_by_term, "querySpec.groupByTerm")
    if spec.group_sort_term is not None:
        _check_name(spec.group_sort_term, "querySpec.groupSortTerm")
    if spec.group_result_limit is not None and spec.group_result_limit < 1:
        raise QuerySpecError("querySpec.groupResultLimit: must be at least 1")


def _select(spec: QuerySpecification, options: set[QueryOption]) -> None:
    if QueryOption.SELECT_LINKS in options:
        if not spec.link_terms:
            raise QuerySpecError(
                "querySpec.linkTerms: must have at least one entry with SELECT_LINKS "
                '(e.g. [{"propertyName": "hostLink"}])'
            )
        for i, term in enumerate(spec.link_terms):
            _check_name(term, f"querySpec.linkTerms[{i}]")
    if QueryOption.EXPAND_SELECTED_FIELDS in options:
        for other in (QueryOption.EXPAND_CONTENT, QueryOption.COUNT):
            if other in options:
                raise QuerySpecError(
                    f"querySpec.options: EXPAND_SELECTED_FIELDS is not compatible with {other} "
                    f"(drop {other}, or EXPAND_SELECTED_FIELDS)"
                )
        if not spec.select_terms:
            raise QuerySpecError(
                "querySpec.selectTerms: must have at least one entry with "
                'EXPAND_SELECTED_FIELDS (e.g. [{"propertyName": "name"}])'
            )
        for i, term in enumerate(spec.select_terms):
            _check_name(term, f"querySpec.selectTerms[{i}]")


def _time(spec: QuerySpecification, options: set[QueryOption]) -> None:
    boundary = spec.time_snapshot_boundary_micros
    if QueryOption.TIME_SNAPSHOT in options and boundary is None:
        raise QuerySpecError(
            "querySpec.timeSnapshotBoundaryMicros: TIME_SNAPSHOT will return latest versions "
            "of documents only if it is provided (microseconds since the epoch)"
        )
    if QueryOption.TIME_SNAPSHOT not in options and boundary is not None:
        raise QuerySpecError(
            "querySpec.timeSnapshotBoundaryMicros: either enable TIME_SNAPSHOT for the latest "
            "versions of documents at this boundary, or do not provide it"
        )
    if boundary is not None and boundary < 0:
        raise QuerySpecError("querySpec.timeSnapshotBoundaryMicros: must not be negative")


def _squash(task: QueryTask, continuous: bool) -> None:
    millis = task.squash_millis
    if millis is None:
        return
    if not continuous:
        raise QuerySpecError(
            "squashMillis: only used by continuous tasks (add CONTINUOUS, or drop squashMillis)"
        )
    if not 0 <= millis <= MAX_SQUASH_MILLIS:
        raise QuerySpecError(
            f"squashMillis: must be between 0 and {MAX_SQUASH_MILLIS} (milliseconds during "
            "which a document's changes go out as one)"
        )


def _check_name(term: QueryTerm, path: str) -> None:
    name = term.property_name
    if not name or any(not part for part in name.split(".")):
        raise QuerySpecError(f"{path}.propertyName: a non-empty dotted property name is required")


def parse_query_task(raw: object) -> QueryTask:
    """Validate a decoded QueryTask JSON body; raise QuerySpecError naming the bad field."""
    if not isinstance(raw, dict):
        raise QuerySpecError(f"body: expected a QueryTask JSON object, got {json_type(raw)}")
    spec = raw.get("querySpec")
    if isinstance(spec, dict):
        check_size(spec.get("query"), "querySpec.query")
    try:
        task = QueryTask.model_validate(raw)
    except ValidationError as exc:
        raise QuerySpecError(describe_error(exc)) from None
    validate_task(task)
    return task


def validate_task(task: QueryTask) -> None:
    """The cross-field rules of Xenon's QueryTaskService.validateState, and fleetwatch's."""
    spec = task.query_spec
    if spec is None:
        raise QuerySpecError("querySpec: required")
    if spec.query is None:
        raise QuerySpecError("querySpec.query: required")
    options = set(spec.options)
    validate_options(task)
    for i, option in enumerate(spec.options):
        if option in UNSUPPORTED_OPTIONS:
            raise QuerySpecError(
                f"querySpec.options[{i}]: {option} is not supported by fleetwatch "
                f"(supported: {', '.join(sorted(SUPPORTED_OPTIONS))})"
            )
    if QueryOption.SORT in options and spec.sort_term is None:
        raise QuerySpecError("querySpec.sortTerm: required with the SORT option")
    if spec.sort_term is not None:
        validate_sort_term(spec.sort_term, "querySpec.sortTerm")
    for i, extra in enumerate(spec.additional_sort_terms or []):
        validate_sort_term(extra, f"querySpec.additionalSortTerms[{i}]")
    if spec.result_limit is not None and spec.result_limit < 1:
        raise QuerySpecError("querySpec.resultLimit: must be at least 1")
    if spec.offset is not None and spec.offset < 0:
        raise QuerySpecError("querySpec.offset: must not be negative")
    if spec.expected_result_count is not None and spec.expected_result_count < 0:
        raise QuerySpecError("querySpec.expectedResultCount: must not be negative")
    expiry = task.document_expiration_time_micros
    if expiry is not None and expiry < 0:
        raise QuerySpecError("documentExpirationTimeMicros: must not be negative")
    validate_query(spec.query, "querySpec.query")
