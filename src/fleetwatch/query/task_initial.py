"""A task's initial results: read in a snapshot, in chunks, and merged into its results."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.index.history import state_at
from fleetwatch.query import execution
from fleetwatch.query.group_counts import GROUP_COUNTS, count_groups
from fleetwatch.query.spec_enums import QueryOption
from fleetwatch.query.stream_messages import Chunk, Initial
from fleetwatch.query.subscriptions import InitialLoader
from fleetwatch.query.task_records import TaskRecord
from fleetwatch.storage.schema import documents

#: Documents per initial-results message.
INITIAL_CHUNK = 500


def initial_loader(record: TaskRecord, dialect: str, *, cursors: bool = False) -> InitialLoader:
    """Reads a continuous task's initial results in a snapshot, in chunks.

    With `cursors` (a subscriber's stream) the documents come in the order of their
    last write, each chunk carrying those sequences, so every chunk is a resume cursor;
    otherwise in the query's result order (the task's own results). A TIME_SNAPSHOT task
    reads the index as of its boundary (`as_of_seq`), in result order either way.
    """
    spec = record.effective_spec

    async def load(conn: AsyncConnection) -> list[Any]:
        as_of = record.as_of_seq
        table = documents if as_of is None else state_at(as_of)
        if record.grouped_count:
            counts = await count_groups(conn, spec, dialect, table)
            total = sum(counts.values())
            return [{"documentLinks": [], "documentCount": total, GROUP_COUNTS: counts}]
        if spec.has(QueryOption.COUNT):
            count = await execution.count_matches(conn, spec, dialect, table)
            return [{"documentLinks": [], "documentCount": count}]
        limit = spec.result_limit if spec.has(QueryOption.TOP_RESULTS) else None
        # As of a boundary: plain chunks in result order (the last one's cursor is the
        # boundary, the replay starts after it).
        if cursors and as_of is None:
            found = await execution.matching_by_write(
                conn, spec, dialect, limit, expand=record.expand
            )
            return cursor_chunks(found, record.expand)
        if record.expand:
            links, bodies = await execution.matching_documents(conn, spec, dialect, limit, table)
        else:
            links = await execution.matching_links(conn, spec, dialect, limit, table)
            bodies = {}
        chunks: list[Any] = []
        for i in range(0, len(links), INITIAL_CHUNK):
            part = links[i : i + INITIAL_CHUNK]
            chunk: JsonObject = {"documentLinks": part}
            if record.expand:
                chunk["documents"] = {link: bodies[link] for link in part}
            chunks.append(chunk)
        return chunks or [{"documentLinks": []}]

    return load


def set_initial(record: TaskRecord, initial: list[Initial], position: int) -> None:
    """The task's results after its initial query (all chunks merged; `position`: the
    hub's, for a task with no initial message)."""
    results: JsonObject = {"documentLinks": []}
    if record.expand:
        results["documents"] = {}
    for message in initial:
        chunk = message.payload
        results["documentLinks"].extend(chunk.get("documentLinks", []))
        if record.expand:
            results["documents"].update(chunk.get("documents", {}))
        if "documentCount" in chunk:
            results["documentCount"] = chunk["documentCount"]
    if record.group_counts is not None:
        for message in initial:
            record.group_counts.reset(message.payload.get(GROUP_COUNTS) or {})
        results = record.group_counts.results()
    elif record.counters is not None:
        record.counters.count = int(results.get("documentCount") or 0)
        results.update(record.counters.annotation())
    else:
        results["documentCount"] = len(results["documentLinks"])
    record.results = results
    record.snapshot_seq = initial[-1].seq if initial else position
    record.state_seq = record.snapshot_seq


def cursor_chunks(found: list[tuple[int, str, JsonObject | None]], expand: bool) -> list[Any]:
    """Initial-result chunks of (write sequence, link, body) rows in sequence order."""
    out: list[Any] = []
    for i in range(0, len(found), INITIAL_CHUNK):
        rows = found[i : i + INITIAL_CHUNK]
        body: JsonObject = {"documentLinks": [link for _, link, _ in rows]}
        if expand:
            body["documents"] = {link: doc for _, link, doc in rows}
        out.append(Chunk(body, tuple(seq for seq, _, _ in rows)))
    return out or [Chunk({"documentLinks": []}, ())]
