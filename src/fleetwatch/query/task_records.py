"""One query task's state: its spec, stage, expiry, results and continuous counters.

A continuous task's record is also its stream's observer: it sees every event in sequence
order and keeps what GET shows (Xenon: the latest notification's results; for COUNT the
running `documentCount` and `continuousResults`; for GROUP_BY + COUNT every group's count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from fleetwatch.index.document import JsonObject, now_micros
from fleetwatch.query.group_counts import GroupCounts
from fleetwatch.query.matcher import CompiledQuery, compile_query
from fleetwatch.query.scope import restrict_spec, scope_json
from fleetwatch.query.spec import Query, QuerySpecification, QueryTask
from fleetwatch.query.spec_enums import QueryOption, TaskStage
from fleetwatch.query.stream_events import Event, EventKind, StreamMode
from fleetwatch.query.task_store import TaskRow

#: Xenon's kind for query tasks, for clients that check documentKind.
QUERY_TASK_KIND = "com:vmware:xenon:services:common:QueryTask"
INDEX_LINK = "/core/document-index"
NODE_SELECTOR_LINK = "/core/node-selectors/default"
#: Stages after which a task no longer runs.
FINAL_STAGES = frozenset({TaskStage.FINISHED, TaskStage.FAILED, TaskStage.CANCELLED})
#: Events whose document may no longer match the task (so may be out of the user's scope).
LEAVING = frozenset({EventKind.STOP_MATCH, EventKind.DELETED})


@dataclass
class Counters:
    """COUNT+CONTINUOUS: the live count and what changed it (Xenon's continuousResults).

    Unlike Xenon, `documentCount` stays exact: a document that stops matching is subtracted
    (and counted in `documentCountStopMatched`), because the previous version is known.
    """

    count: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    stop_matched: int = 0

    def apply(self, event: Event) -> None:
        if event.kind is EventKind.ADDED:
            self.count += 1
            self.added += 1
        elif event.kind is EventKind.UPDATED:
            self.updated += 1
        elif event.kind is EventKind.DELETED:
            if event.before:
                self.count -= 1
            self.deleted += 1
        else:
            self.count -= 1
            self.stop_matched += 1

    def annotation(self) -> JsonObject:
        return {
            "documentCount": self.count,
            "continuousResults": {
                "documentCountAdded": self.added,
                "documentCountUpdated": self.updated,
                "documentCountDeleted": self.deleted,
                "documentCountStopMatched": self.stop_matched,
            },
        }

    @classmethod
    def from_results(cls, results: JsonObject) -> Counters:
        cont = results.get("continuousResults") or {}
        return cls(
            count=int(results.get("documentCount") or 0),
            added=int(cont.get("documentCountAdded") or 0),
            updated=int(cont.get("documentCountUpdated") or 0),
            deleted=int(cont.get("documentCountDeleted") or 0),
            stop_matched=int(cont.get("documentCountStopMatched") or 0),
        )


@dataclass(eq=False)
class TaskRecord:
    """A query task in memory."""

    link: str
    factory: str
    task: QueryTask
    stage: TaskStage
    expiration_micros: int
    created_micros: int
    owner_id: int | None = None
    #: The sequence the initial results were read at (-1: not run yet).
    snapshot_seq: int = -1
    #: The sequence the stored state reflects (saved with it): a node resumes the task's
    #: stream after it, whichever node saved it last.
    state_seq: int = -1
    results: JsonObject = field(default_factory=dict)
    counters: Counters | None = None
    #: GROUP_BY + COUNT + CONTINUOUS: the live counts.
    group_counts: GroupCounts | None = None
    #: TIME_SNAPSHOT + CONTINUOUS: the sequence the boundary stands for (subscribers get
    #: the results as of it, then every change after it).
    as_of_seq: int | None = None
    version: int = 0
    update_micros: int = 0
    duration_micros: int = 0
    failure: JsonObject | None = None
    #: ANDed onto the task's query: what its user may see (None: the whole index).
    scope: Query | None = None
    #: Unsaved changes (the flusher writes dirty records).
    dirty: bool = False
    #: Group counts moved since `results` was last built from them (see `on_event`).
    counts_moved: bool = False

    # --- properties of the spec --------------------------------------------------------

    @cached_property
    def effective_spec(self) -> QuerySpecification:
        """The spec that runs: the task's, with its query restricted to the scope."""
        return restrict_spec(self.task.spec, self.scope)

    @property
    def effective_query(self) -> Query:
        """The query that runs (see `effective_spec`)."""
        query = self.effective_spec.query
        assert query is not None  # parse_query_task requires one
        return query

    @cached_property
    def compiled_scope(self) -> CompiledQuery | None:
        return None if self.scope is None else compile_query(self.scope)

    def shown_document(self, event: Event) -> JsonObject | None:
        """The document an EXPAND_CONTENT notification carries: the version written, unless
        it left the user's scope (a host moved to another team, say): then the version
        before, which the user could see, or nothing (only the link) if that is out too."""
        body = event.change.body
        scope = self.compiled_scope
        if scope is None or event.kind not in LEAVING or scope.matches(body):
            return body
        before = event.change.prev_body
        return before if before is not None and scope.matches(before) else None

    @property
    def continuous(self) -> bool:
        return self.task.spec.is_continuous

    # Cached: read for every notification, and the task's spec never changes.
    @cached_property
    def expand(self) -> bool:
        return self.task.spec.has(QueryOption.EXPAND_CONTENT)

    @property
    def count(self) -> bool:
        return self.task.spec.has(QueryOption.COUNT)

    @property
    def grouped_count(self) -> bool:
        """GROUP_BY + COUNT: the results are group counts."""
        return self.count and self.task.spec.has(QueryOption.GROUP_BY)

    @property
    def squash_millis(self) -> int:
        return self.task.squash_millis or 0

    def start_counting(self) -> None:
        """A continuous COUNT task's counters (group counts with GROUP_BY), from zero."""
        spec = self.task.spec
        if self.grouped_count and spec.group_by_term is not None:
            self.group_counts = GroupCounts(spec.group_by_term.property_name or "")
        elif self.count:
            self.counters = Counters()

    def resume_counting(self) -> None:
        """The counters a saved task's results hold."""
        spec = self.task.spec
        if self.grouped_count and spec.group_by_term is not None:
            name = spec.group_by_term.property_name or ""
            self.group_counts = GroupCounts.from_results(name, self.results)
        elif self.count:
            self.counters = Counters.from_results(self.results)

    @property
    def running(self) -> bool:
        return self.continuous and self.stage is TaskStage.STARTED

    @cached_property
    def mode(self) -> StreamMode:
        spec = self.task.spec
        stop_match = spec.has(QueryOption.CONTINUOUS_STOP_MATCH)
        return StreamMode(
            notify_match=spec.has(QueryOption.CONTINUOUS),
            notify_leave=stop_match,
            track_leave=stop_match or self.count,
            annotated_only=self.grouped_count,
        )

    # --- the stream observer -----------------------------------------------------------

    def on_event(self, event: Event) -> JsonObject | None:
        """A new event of this task's stream: keep GET's view and the counters."""
        if self.group_counts is not None:
            moved = self.group_counts.apply(event)
            if moved is not None:
                # GET's view copies every group: built when read (`current_results`), not
                # on each of thousands of events a second.
                self.counts_moved = True
                self.touch()
            return moved
        annotation: JsonObject | None = None
        if self.counters is not None:
            self.counters.apply(event)
            annotation = self.counters.annotation()
        if self.mode.delivers(event.kind):
            link = event.change.self_link
            results: JsonObject = {"documentLinks": [link]}
            if self.expand:
                document = self.shown_document(event)
                results["documents"] = {} if document is None else {link: document}
            if annotation is not None:
                results.update(annotation)
            self.results = results
        elif annotation is not None:
            self.results = {**self.results, **annotation}
        self.touch()
        return annotation

    def describe(self, event: Event) -> JsonObject | None:
        """A replayed event's annotation: the current counters (history is not kept)."""
        if self.group_counts is not None:
            return self.group_counts.describe(event)
        return self.counters.annotation() if self.counters is not None else None

    def touch(self) -> None:
        self.version += 1
        self.update_micros = now_micros()
        self.dirty = True

    # --- views -------------------------------------------------------------------------

    def current_results(self) -> JsonObject:
        """The results GET shows (group counts brought up to date first)."""
        if self.counts_moved and self.group_counts is not None:
            self.results = self.group_counts.results()
            self.counts_moved = False
        return self.results

    def spec_json(self) -> JsonObject:
        dumped: JsonObject = self.task.spec.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        return dumped

    def to_json(self) -> JsonObject:
        """The task as GET shows it."""
        task_info: JsonObject = {
            "stage": self.stage.value,
            "isDirect": self.task.task_info.is_direct,
            "durationMicros": self.duration_micros,
        }
        if self.failure is not None:
            task_info["failure"] = self.failure
        body: JsonObject = {
            "documentSelfLink": self.link,
            "documentKind": QUERY_TASK_KIND,
            "documentVersion": self.version,
            "documentUpdateTimeMicros": self.update_micros,
            "documentExpirationTimeMicros": self.expiration_micros,
            "taskInfo": task_info,
            "querySpec": self.spec_json(),
            "results": self.current_results(),
            "indexLink": INDEX_LINK,
            "nodeSelectorLink": NODE_SELECTOR_LINK,
            "seq": self.snapshot_seq,
        }
        if self.scope is not None:
            body["scope"] = scope_json(self.scope)
        if self.task.squash_millis is not None:
            body["squashMillis"] = self.task.squash_millis
        if self.as_of_seq is not None:
            body["asOfSeq"] = self.as_of_seq
        return body

    def row(self) -> TaskRow:
        return TaskRow(
            self_link=self.link,
            factory=self.factory,
            continuous=self.continuous,
            stage=self.stage.value,
            expiration_micros=self.expiration_micros,
            created_micros=self.created_micros,
            snapshot_seq=self.state_seq if self.state_seq >= 0 else self.snapshot_seq,
            owner_id=self.owner_id,
            body=self.to_json(),
        )
