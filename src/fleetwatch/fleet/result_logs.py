"""osquery's result and status logs, stored as `fleet:log` documents in the index.

A result row is identified by host, query name, epoch, counter, action and columns, so
osquery's at-least-once resend of a batch stores each row once (the write is an idempotent
POST). Every format is accepted: event rows (added/removed), batch `diffResults`, and
snapshots. An item that is not a log line is kept too, flagged `malformed`, rather than
refused: refusing would make osquery resend the same batch forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson

from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.host_state import HostState
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.query.listing import Listing, Order, read_page
from fleetwatch.query.scope import all_of, any_of, term

LOG_KIND = "fleet:log"
LOG_TYPES = ("result", "status")
MAX_PER_PAGE = 1000


def _digest(*parts: Any) -> str:
    raw = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(raw).hexdigest()[:32]


def log_prefix(host_id: int) -> str:
    return f"/fleet/logs/{host_id}/"


class ResultLogService:
    """Stores and reads back the logs agents send."""

    def __init__(self, index: DocumentIndex) -> None:
        self.index = index
        #: Called with (host, log_type, data, rows stored) once a batch is stored (ops hook).
        self.on_ingest: Callable[[HostState, str, Sequence[Any], int], None] | None = None

    async def ingest(self, host: HostState, log_type: str, data: Sequence[Any]) -> int:
        """Store a batch; returns how many new rows were stored (resends count zero)."""
        if log_type not in LOG_TYPES:
            raise Invalid(f"log_type must be 'result' or 'status', not {log_type!r}")
        writes: list[Write] = []
        for item in data:
            for body in _rows(log_type, item):
                body["host_id"] = host.id
                body["hostname"] = host.hostname
                # the host's team when the row arrived: what team users' queries see
                body["team_id"] = host.team_id
                digest = _digest(
                    host.id,
                    body["log_type"],
                    body.get("name"),
                    body.get("epoch"),
                    body.get("counter"),
                    body.get("action"),
                    body.get("columns"),
                    body.get("unixTime") if body.get("action") == "snapshot" else None,
                    body.get("message") if log_type == "status" else None,
                    body.get("raw"),
                )
                writes.append(
                    Write(
                        Action.POST,
                        f"{log_prefix(host.id)}{digest}",
                        LOG_KIND,
                        body,
                        if_absent=True,
                    )
                )
        if not writes:
            return 0
        outcomes = await self.index.apply(writes)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        stored = sum(1 for o in outcomes if o is not None)
        if self.on_ingest is not None:
            self.on_ingest(host, log_type, data, stored)
        return stored

    async def list(
        self,
        host_id: int,
        *,
        log_type: str | None = None,
        name: str | None = None,
        team_ids: Collection[int] | None = None,
        page: int = 0,
        per_page: int = 100,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of a host's stored log rows, newest first, and the total count.

        With `team_ids` (a team user's teams), only rows stored while the host was in one of
        them: a host that changed teams keeps its earlier rows from its new team.
        """
        if per_page < 1 or per_page > MAX_PER_PAGE:
            raise Invalid(f"per_page must be between 1 and {MAX_PER_PAGE}")
        if page < 0:
            raise Invalid("page starts at 0")
        if log_type is not None and log_type not in LOG_TYPES:
            raise Invalid("type must be 'result' or 'status'")
        if team_ids is not None and not team_ids:
            return [], 0  # a team user of no team sees no rows
        terms = []
        if log_type is not None:
            terms.append(term("log_type", log_type))
        if name is not None:
            terms.append(term("name", name))
        if team_ids is not None:
            terms.append(any_of(*(term("team_id", t) for t in sorted(team_ids))))
        listing = Listing(
            link_prefix=log_prefix(host_id),
            where=all_of(*terms) if terms else None,
            order=Order.NEWEST,
        )
        found = await read_page(
            self.index.db, listing, limit=per_page, offset=page * per_page, count=True
        )
        assert found.total is not None
        return found.bodies, found.total


def _base(item: Mapping[str, Any]) -> dict[str, Any]:
    keep = (
        "name",
        "hostIdentifier",
        "calendarTime",
        "unixTime",
        "epoch",
        "counter",
        "numerics",
        "decorations",
    )
    return {k: item[k] for k in keep if k in item}


def _rows(log_type: str, item: Any) -> list[dict[str, Any]]:
    """The documents one log line becomes."""
    if not isinstance(item, Mapping):
        return [{"log_type": log_type, "malformed": True, "raw": item}]
    if log_type == "status":
        body = dict(item)
        body["log_type"] = "status"
        return [body]
    if isinstance(item.get("columns"), Mapping):
        body = _base(item)
        body.update(
            log_type="result", action=item.get("action", "added"), columns=dict(item["columns"])
        )
        return [body]
    diff = item.get("diffResults")
    if isinstance(diff, Mapping):
        out = []
        for action in ("added", "removed"):
            for row in diff.get(action) or []:
                body = _base(item)
                body.update(
                    log_type="result",
                    action=action,
                    columns=row if isinstance(row, Mapping) else {"value": row},
                )
                out.append(body)
        return out
    snapshot = item.get("snapshot")
    if isinstance(snapshot, list):
        out = []
        for row in snapshot:
            body = _base(item)
            body.update(
                log_type="result",
                action="snapshot",
                columns=row if isinstance(row, Mapping) else {"value": row},
            )
            out.append(body)
        return out
    return [{"log_type": log_type, "malformed": True, "raw": dict(item)}]
