"""The audit feed: who did what, stored as `fleet:activity` documents (so it can be watched)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.hosts import iso
from fleetwatch.fleet.users import User
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.index.store import document_from_row
from fleetwatch.storage.counters import next_id
from fleetwatch.storage.schema import documents

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
        where = (documents.c.kind == ACTIVITY_KIND) & documents.c.deleted.is_(False)
        async with self.index.db.connect() as conn:
            total = int(
                (
                    await conn.execute(select(func.count()).select_from(documents).where(where))
                ).scalar_one()
            )
            rows = await conn.execute(
                select(documents)
                .where(where)
                .order_by(documents.c.update_time_micros.desc(), documents.c.self_link.desc())
                .limit(per_page)
                .offset(page * per_page)
            )
            items = [
                {
                    k: v
                    for k, v in document_from_row(r._mapping).body.items()
                    if not k.startswith("document")
                }
                for r in rows
            ]
        return items, total
