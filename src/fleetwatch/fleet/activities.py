"""The audit feed: who did what, stored as `fleet:activity` documents (so it can be watched)."""

from __future__ import annotations

import time
from typing import Any

from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.host_state import iso
from fleetwatch.fleet.users import User
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.query.listing import Listing, Order, read_page
from fleetwatch.storage.counters import next_id

ACTIVITY_KIND = "fleet:activity"
MAX_PER_PAGE = 1000


class ActivityService:
    """Records and lists activities, newest first."""

    def __init__(self, index: DocumentIndex) -> None:
        self.index = index

    async def record(self, kind: str, actor: User | None, details: dict[str, Any]) -> int:
        """Store one activity and return its id."""
        activity_id = await next_id(self.index.db, "activity")
        body = {
            "id": activity_id,
            "type": kind,
            "actor_id": actor.id if actor else None,
            "actor_email": actor.email if actor else None,
            "created_at": iso(time.time()),
            "details": details,
        }
        await self.index.write(
            Write(Action.POST, f"/fleet/activities/{activity_id}", ACTIVITY_KIND, body)
        )
        return activity_id

    async def list(self, page: int = 0, per_page: int = 100) -> tuple[list[dict[str, Any]], int]:
        if per_page < 1 or per_page > MAX_PER_PAGE or page < 0:
            raise Invalid(f"page starts at 0 and per_page is 1 to {MAX_PER_PAGE}")
        listing = Listing(kind=ACTIVITY_KIND, order=Order.NEWEST_LINK_DESC)
        found = await read_page(
            self.index.db, listing, limit=per_page, offset=page * per_page, count=True
        )
        assert found.total is not None
        items = [
            {k: v for k, v in body.items() if not k.startswith("document")} for body in found.bodies
        ]
        total = found.total
        return items, total
