"""The document index: documents plus an ordered change log, written in one transaction.

Writes are group-committed: concurrent callers' writes are merged into one transaction, so
ingesting many small batches (result rows, check-ins) costs one commit, not one each. Every
committed change gets the next sequence number and is handed, in sequence order, to the
listeners (the continuous query engine, subscriptions) after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import (
    BUILTIN_FIELDS,
    EXPIRATION,
    KIND,
    SELF_LINK,
    UPDATE_ACTION,
    UPDATE_TIME,
    VERSION,
    Action,
    Change,
    Document,
    JsonObject,
    Write,
    now_micros,
)
from fleetwatch.index.errors import (
    DocumentExists,
    DocumentIndexError,
    DocumentNotFound,
    InvalidWrite,
    VersionConflict,
)
from fleetwatch.storage.database import Database, JsonText
from fleetwatch.storage.schema import changes, documents

ChangeListener = Callable[[Sequence[Change]], None]

log = logging.getLogger(__name__)

#: Lock key that serialises change-log appends across nodes on PostgreSQL, so that sequence
#: order is commit order (a reader of `seq > S` never misses a later-committed lower seq).
_PG_CHANGELOG_LOCK = 0x466C_6565_7477  # "Fleetw"

#: Upper bound of writes merged into one transaction.
_MAX_GROUP = 2000

Outcome = Change | None | DocumentIndexError


@dataclass
class _Pending:
    writes: Sequence[Write]
    future: asyncio.Future[list[Outcome]]


class DocumentIndex:
    """Stores documents and appends one change per write, in order."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners: list[ChangeListener] = []
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_seq = 0
        #: Highest sequence handed to the listeners. On a cluster, changes committed by
        #: other nodes arrive through `deliver` and local ones must wait their turn.
        self._delivered = 0
        self._ordered = False
        self._deliver_lock = asyncio.Lock()
        #: Called after each local commit with its changes (the cluster publishes them).
        self.on_commit: ChangeListener | None = None

    # --- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` with every batch of committed changes, in sequence order."""
        self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        self._listeners.remove(listener)

    @property
    def backlog(self) -> int:
        """Writes waiting for the next group commit (a measure of write pressure)."""
        return sum(len(p.writes) for p in self._queue)

    @property
    def last_seq(self) -> int:
        """The highest sequence this process has committed or loaded."""
        return self._last_seq

    @property
    def delivered_seq(self) -> int:
        """The highest sequence the listeners have been given."""
        return self._delivered

    def order_across_nodes(self) -> None:
        """Other nodes write to the same store: deliver every change in sequence order,
        local or not (see `deliver`)."""
        self._ordered = True

    async def start(self) -> None:
        """Load the current end of the change log."""
        self._last_seq = await self.read_last_seq()
        self._delivered = self._last_seq

    # --- writes ------------------------------------------------------------------------

    async def apply(self, writes: Sequence[Write]) -> list[Outcome]:
        """Apply writes atomically with respect to each other; one outcome per write.

        An outcome is the Change written, None for a skipped `if_absent` POST, or the
        DocumentIndexError that refused that write (other writes still apply).
        """
        if not writes:
            return []
        loop = asyncio.get_running_loop()
        pending = _Pending(writes, loop.create_future())
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await pending.future

    async def write(self, write: Write) -> Change | None:
        """Apply one write; raise its error if it was refused."""
        (outcome,) = await self.apply([write])
        if isinstance(outcome, DocumentIndexError):
            raise outcome
        return outcome

    async def _drain(self) -> None:
        while self._queue:
            group: list[_Pending] = []
            size = 0
            while self._queue and (not group or size + len(self._queue[0].writes) <= _MAX_GROUP):
                item = self._queue.pop(0)
                group.append(item)
                size += len(item.writes)
            try:
                outcomes = await self._commit([w for p in group for w in p.writes])
            except BaseException as exc:  # the whole transaction failed: tell every caller
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            committed = [o for o in outcomes if isinstance(o, Change)]
            if committed:
                self._last_seq = max(self._last_seq, committed[-1].seq)
                if self._ordered:
                    try:
                        await self.deliver(committed, committed[-1].seq)
                    except Exception:  # committed all the same; the catch-up poll retries
                        log.exception("delivering committed changes failed")
                else:
                    self._delivered = committed[-1].seq
                    self._notify(committed)
                if self.on_commit is not None:
                    self.on_commit(committed)
            start = 0
            for p in group:
                n = len(p.writes)
                if not p.future.done():
                    p.future.set_result(outcomes[start : start + n])
                start += n

    async def deliver(self, changes: Sequence[Change] | None, upto: int) -> int:
        """Hand the listeners every change up to sequence `upto` not given them yet.

        `changes` is a contiguous run ending at `upto` that the caller already has (a
        local commit, or what another node published); whatever lies between the last
        delivered sequence and that run is read from the store. Sequence order is commit
        order (see `_PG_CHANGELOG_LOCK`), so once `upto` is committed everything below it
        is either in the store or was rolled back: nothing read here can be missed later.
        Returns how many changes were delivered.
        """
        async with self._deliver_lock:
            if upto <= self._delivered:
                return 0
            run = [c for c in changes or () if c.seq > self._delivered]
            first = run[0].seq if run else upto + 1
            missing: list[Change] = []
            after = self._delivered
            while after < first - 1:
                page = await self.read_changes(after, 1000)
                page = [c for c in page if c.seq < first]
                if not page:
                    break
                missing.extend(page)
                after = page[-1].seq
            batch = missing + run
            self._delivered = upto
            self._last_seq = max(self._last_seq, upto)
            if batch:
                self._notify(batch)
            return len(batch)

    async def catch_up(self) -> int:
        """Deliver whatever other nodes committed that has not arrived (missed broadcasts)."""
        last = await self.read_last_seq()
        if last <= self._delivered:
            return 0
        return await self.deliver(None, last)

    def _notify(self, committed: Sequence[Change]) -> None:
        for listener in list(self._listeners):
            listener(committed)

    async def _commit(self, writes: Sequence[Write]) -> list[Outcome]:
        # The whole transaction is one call (on SQLite one hop to the writer thread).
        return await self.db.run_write(partial(_commit_writes, writes=writes))

    # --- reads -------------------------------------------------------------------------

    async def get(self, self_link: str, *, include_deleted: bool = False) -> Document | None:
        """The latest version of a document, or None."""
        async with self.db.connect() as conn:
            found = await _load(conn, [self_link])
        if not found or (found[0].deleted and not include_deleted):
            return None
        return found[0]

    async def get_many(self, self_links: Sequence[str]) -> dict[str, Document]:
        """The latest live version of each of these documents that exists, by link (one
        read per 500 links: callers page through a large set in bounded chunks)."""
        found: dict[str, Document] = {}
        async with self.db.connect() as conn:
            for i in range(0, len(self_links), 500):
                for doc in await _load(conn, self_links[i : i + 500]):
                    if not doc.deleted:
                        found[doc.self_link] = doc
        return found

    async def read_changes(
        self, after_seq: int, limit: int = 1000, *, kinds: Sequence[str] = ()
    ) -> list[Change]:
        """Changes with a sequence above `after_seq`, oldest first (only of `kinds`, if
        given: a reader that follows one kind of document, e.g. a destination)."""
        query = select(changes).where(changes.c.seq > after_seq)
        if kinds:
            query = query.where(changes.c.kind.in_(list(kinds)))
        async with self.db.connect() as conn:
            result = await conn.execute(query.order_by(changes.c.seq).limit(limit))
            return [_change_from_row(r._mapping) for r in result]

    async def first_retained_seq(self) -> int:
        """The oldest sequence still in the log (0 when the log is empty)."""
        async with self.db.connect() as conn:
            value = (await conn.execute(select(func.min(changes.c.seq)))).scalar()
        return int(value or 0)

    async def read_last_seq(self) -> int:
        """The highest committed sequence in the store."""
        async with self.db.connect() as conn:
            value = (await conn.execute(select(func.max(changes.c.seq)))).scalar()
        return int(value or 0)


def _commit_writes(conn: Connection, writes: Sequence[Write]) -> list[Outcome]:
    """Apply `writes` in the transaction of `conn`: one outcome per write."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_PG_CHANGELOG_LOCK)))
    links = sorted({w.self_link for w in writes})
    current: dict[str, Document] = {}
    for i in range(0, len(links), 500):
        for loaded in _load_sync(conn, links[i : i + 500]):
            current[loaded.self_link] = loaded
    stored = set(current)  # links with a row (deleted ones too): updates, not inserts
    outcomes: list[Outcome] = []
    # Each body is serialized once (JsonText) for its change row and its document row.
    rows: list[dict[str, Any]] = []
    staged: list[tuple[int, Document, JsonObject | None]] = []
    final: dict[str, tuple[Document, JsonText]] = {}
    for write in writes:
        try:
            doc = _next_version(write, current.get(write.self_link))
        except DocumentIndexError as exc:
            outcomes.append(exc)
            continue
        if doc is None:
            outcomes.append(None)
            continue
        outcomes.append(None)  # replaced by the Change once its seq is known
        prev = current.get(write.self_link)
        prev_body = None if prev is None or prev.deleted else prev.body
        staged.append((len(outcomes) - 1, doc, prev_body))
        text = JsonText(doc.body)
        earlier = final.get(write.self_link)  # written before in this transaction
        if prev_body is None:
            prev_text = None
        elif earlier is not None and earlier[0] is prev:
            prev_text = earlier[1]
        else:
            prev_text = JsonText(prev_body)
        rows.append(
            {
                "self_link": doc.self_link,
                "kind": doc.kind,
                "version": doc.version,
                "action": doc.update_action.value,
                "time_micros": doc.update_time_micros,
                "body": text,
                "prev_body": prev_text,
            }
        )
        current[write.self_link] = doc
        final[write.self_link] = (doc, text)
    if not staged:
        return outcomes
    # Persist the final state of every touched document once; one statement per
    # kind of write, not one per document (each statement is a round trip).
    inserts = [_doc_row(d, t) for link, (d, t) in final.items() if link not in stored]
    if inserts:
        conn.execute(_INSERT_DOCUMENTS, inserts)
    updates = [_doc_update_row(d, t) for link, (d, t) in final.items() if link in stored]
    if updates:
        conn.execute(_UPDATE_DOCUMENT, updates)
    seqs = _append_changes(conn, rows, dialect)
    for (index, doc, prev_body), seq in zip(staged, seqs, strict=True):
        outcomes[index] = Change(
            seq=seq,
            self_link=doc.self_link,
            kind=doc.kind,
            version=doc.version,
            action=doc.update_action,
            time_micros=doc.update_time_micros,
            body=doc.body,
            prev_body=prev_body,
        )
    return outcomes


def _next_version(write: Write, prev: Document | None) -> Document | None:
    """The document as `write` leaves it, or None for a skipped if_absent POST."""
    for key in write.body:
        if key in BUILTIN_FIELDS and key not in (SELF_LINK, KIND, EXPIRATION):
            raise InvalidWrite(f"{key} is set by the index and cannot be written")
    live = prev is not None and not prev.deleted
    if write.expected_version is not None and prev is not None:
        if prev.version != write.expected_version:
            raise VersionConflict(write.self_link, write.expected_version, prev.version)
    action = write.action
    if action is Action.POST:
        if live:
            if write.if_absent:
                return None
            raise DocumentExists(write.self_link)
        fields = dict(write.body)
    elif action is Action.PUT:
        fields = dict(write.body)
    elif action is Action.PATCH:
        if not live or prev is None:
            raise DocumentNotFound(write.self_link)
        fields = {k: v for k, v in prev.body.items() if k not in BUILTIN_FIELDS}
        fields.update({k: v for k, v in write.body.items() if v is not None})
    else:  # DELETE keeps the last state, as Xenon does
        if not live or prev is None:
            raise DocumentNotFound(write.self_link)
        fields = {k: v for k, v in prev.body.items() if k not in BUILTIN_FIELDS}
    kind = write.kind or (prev.kind if prev is not None else None)
    if not kind:
        raise InvalidWrite(f"a new document needs a documentKind ({write.self_link})")
    if write.expiration_micros is not None:
        expiration: int | None = write.expiration_micros
    elif EXPIRATION in write.body:
        raw = write.body[EXPIRATION]
        if raw is not None and not isinstance(raw, int):
            raise InvalidWrite(f"{EXPIRATION} must be an integer (microseconds since the epoch)")
        expiration = raw or None
    elif action in (Action.PATCH, Action.DELETE) and prev is not None:
        expiration = prev.expiration_micros
    else:
        expiration = None
    version = 0 if prev is None else prev.version + 1
    micros = now_micros()
    body: JsonObject = {k: v for k, v in fields.items() if k not in BUILTIN_FIELDS}
    body.update(
        {
            SELF_LINK: write.self_link,
            KIND: kind,
            VERSION: version,
            UPDATE_TIME: micros,
            UPDATE_ACTION: action.value,
            EXPIRATION: expiration or 0,
        }
    )
    return Document(
        self_link=write.self_link,
        kind=kind,
        version=version,
        update_time_micros=micros,
        update_action=action,
        expiration_micros=expiration,
        deleted=action is Action.DELETE,
        body=body,
    )


def _doc_row(doc: Document, body: JsonText) -> dict[str, Any]:
    return {
        "self_link": doc.self_link,
        "kind": doc.kind,
        "version": doc.version,
        "update_time_micros": doc.update_time_micros,
        "update_action": doc.update_action.value,
        "expiration_micros": doc.expiration_micros,
        "deleted": doc.deleted,
        "body": body,
    }


async def _load(conn: AsyncConnection, links: Sequence[str]) -> list[Document]:
    result = await conn.execute(_SELECT_DOCUMENTS, {"links": list(links)})
    return [document_from_row(r._mapping) for r in result]


def _load_sync(conn: Connection, links: Sequence[str]) -> list[Document]:
    result = conn.execute(_SELECT_DOCUMENTS, {"links": list(links)})
    return [document_from_row(r._mapping) for r in result]


# The group commit's statements, built once: one built per call is coerced and has its
# cache key computed again on every commit (a quarter of the writer thread's CPU at 2,000
# writes/s in batches of 10).
_SELECT_DOCUMENTS = select(documents).where(
    documents.c.self_link.in_(bindparam("links", expanding=True))
)
_INSERT_DOCUMENTS = insert(documents)
_INSERT_CHANGES = insert(changes)
_INSERT_CHANGES_RETURNING = _INSERT_CHANGES.returning(changes.c.seq, sort_by_parameter_order=True)
_LAST_SEQ = select(func.max(changes.c.seq))
#: Executemany UPDATE of whole document rows, matched on `match_link` (the SET clause
#: takes the columns of each parameter set; see `_doc_update_row`).
_UPDATE_DOCUMENT = update(documents).where(documents.c.self_link == bindparam("match_link"))


def _doc_update_row(doc: Document, body: JsonText) -> dict[str, Any]:
    row = _doc_row(doc, body)
    row["match_link"] = row.pop("self_link")
    return row


def _append_changes(conn: Connection, rows: Sequence[dict[str, Any]], dialect: str) -> list[int]:
    """Insert change rows and return their sequence numbers, in order."""
    if dialect == "sqlite":
        # SQLAlchemy runs an INSERT .. RETURNING that must keep parameter order one row at
        # a time on SQLite (two round trips to the driver's thread per change). The caller
        # holds SQLite's only write transaction, so number the rows as SQLite would (the
        # highest seq plus one; retention never trims the newest) in one executemany.
        top = conn.execute(_LAST_SEQ).scalar()
        first = int(top or 0) + 1
        seqs = list(range(first, first + len(rows)))
        conn.execute(_INSERT_CHANGES, [{**r, "seq": q} for r, q in zip(rows, seqs, strict=True)])
        return seqs
    seqs = []
    for i in range(0, len(rows), 500):
        chunk = rows[i : i + 500]
        result = conn.execute(_INSERT_CHANGES_RETURNING, chunk)
        seqs.extend(int(r[0]) for r in result)
    return seqs


def document_from_row(row: Any) -> Document:
    """A Document from a `documents` row mapping."""
    return Document(
        self_link=row["self_link"],
        kind=row["kind"],
        version=int(row["version"]),
        update_time_micros=int(row["update_time_micros"]),
        update_action=Action(row["update_action"]),
        expiration_micros=row["expiration_micros"],
        deleted=bool(row["deleted"]),
        body=row["body"],
    )


def _change_from_row(row: Any) -> Change:
    return Change(
        seq=int(row["seq"]),
        self_link=row["self_link"],
        kind=row["kind"],
        version=int(row["version"]),
        action=Action(row["action"]),
        time_micros=int(row["time_micros"]),
        body=row["body"],
        prev_body=row["prev_body"],
    )
