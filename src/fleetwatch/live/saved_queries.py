"""Saved queries: named SQL a team reuses, as `fleet:query` documents at /fleet/queries/{id}."""

from __future__ import annotations

import time
from typing import Any

from fleetwatch.fleet.errors import Conflict, Invalid, NotFound
from fleetwatch.fleet.host_state import iso
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.live.campaign_destinations import Names, check_destinations
from fleetwatch.query.listing import Listing, read_page
from fleetwatch.sql_check import InvalidSql, check_live_sql_off_loop
from fleetwatch.storage.counters import next_id

QUERY_KIND = "fleet:query"
PLATFORMS = ("", "darwin", "windows", "linux", "chrome")


def query_link(query_id: int) -> str:
    return f"/fleet/queries/{query_id}"


def _view(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if not k.startswith("document")}


class SavedQueryService:
    """CRUD of saved queries; the SQL is validated like a live query's.

    A saved query's `destinations` are where its runs send their result rows (unless the
    run names its own; live/campaign_destinations.py)."""

    def __init__(self, index: DocumentIndex) -> None:
        self.index = index
        #: The destination names it may list (the app sets them from the settings).
        self.destination_names: Names = tuple

    async def list(self) -> list[dict[str, Any]]:
        found = await read_page(self.index.db, Listing(kind=QUERY_KIND))
        items = [_view(body) for body in found.bodies]
        return sorted(items, key=lambda q: int(q["id"]))

    async def get(self, query_id: int) -> dict[str, Any]:
        doc = await self.index.get(query_link(query_id))
        if doc is None:
            raise NotFound(f"no saved query with id {query_id}")
        return _view(doc.body)

    async def _check(self, fields: dict[str, Any], own_id: int | None) -> None:
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip():
            raise Invalid("name must be a non-empty string")
        try:
            fields["query"] = await check_live_sql_off_loop(fields.get("query"))
        except InvalidSql as exc:
            raise Invalid(f"query: {exc}") from exc
        if fields.get("platform", "") not in PLATFORMS:
            raise Invalid(f"platform must be one of {', '.join(p or '(empty)' for p in PLATFORMS)}")
        for other in await self.list():
            if other["name"] == name.strip() and other["id"] != own_id:
                raise Conflict(f"a saved query named {name.strip()!r} already exists")
        fields["name"] = name.strip()
        fields["destinations"] = list(
            check_destinations(fields.get("destinations"), self.destination_names())
        )

    async def create(self, fields: dict[str, Any], author_id: int | None) -> dict[str, Any]:
        body = {
            "name": fields.get("name"),
            "description": fields.get("description") or "",
            "query": fields.get("query"),
            "observer_can_run": bool(fields.get("observer_can_run", False)),
            "platform": fields.get("platform") or "",
            "author_id": author_id,
            "destinations": fields.get("destinations"),
        }
        await self._check(body, None)
        query_id = await next_id(self.index.db, "saved_query")
        now = iso(time.time())
        body.update(id=query_id, created_at=now, updated_at=now)
        await self.index.write(Write(Action.POST, query_link(query_id), QUERY_KIND, body))
        return _view(body)

    async def update(self, query_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        current = await self.get(query_id)
        merged = {**current, **{k: v for k, v in fields.items() if v is not None}}
        merged["observer_can_run"] = bool(merged.get("observer_can_run"))
        await self._check(merged, query_id)
        merged["updated_at"] = iso(time.time())
        await self.index.write(Write(Action.PUT, query_link(query_id), QUERY_KIND, merged))
        return merged

    async def delete(self, query_id: int) -> None:
        await self.get(query_id)
        await self.index.write(Write(Action.DELETE, query_link(query_id)))
