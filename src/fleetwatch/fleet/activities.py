"""The audit feed: who did what, stored as `fleet:activity` documents (so it can be watched).

Some activities tell what only their actor and global admins may read: a `live_query`
activity holds the campaign's SQL, targets and id, and a campaign is private to the user who
started it (see `fleetwatch.live.scope`). Anyone else reading the feed gets such an activity
redacted (`redacted_for`): who did it and when, `"redacted": true`, no details.
"""

from __future__ import annotations

import time
from typing import Any

from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.host_state import iso
from fleetwatch.fleet.users import User
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.query.listing import Listing, Order, read_page
from fleetwatch.storage.counters import next_id

ACTIVITY_KIND = "fleet:activity"
MAX_PER_PAGE = 1000
#: Activity types whose details only their actor and global admins may read.
PRIVATE_TYPES = ("live_query",)
#: What a redacted activity keeps.
_REDACTED_KEEPS = ("id", "type", "actor_id", "actor_email", "created_at")


def redacted_for(access: Access, activity: dict[str, Any]) -> dict[str, Any]:
    """The activity as `access`'s user may read it: whole for its actor, for a global admin
    and for a type that is not private; otherwise without its details, marked redacted."""
    if (
        activity.get("type") not in PRIVATE_TYPES
        or access.global_at_least("admin")
        or (activity.get("actor_id") is not None and activity.get("actor_id") == access.user.id)
    ):
        return activity
    return {k: activity[k] for k in _REDACTED_KEEPS if k in activity} | {"redacted": True}


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
