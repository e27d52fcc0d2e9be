"""The seen-time flush: check-ins kept in memory, written to the hosts table in batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, case, or_, update

from fleetwatch.storage import Database
from fleetwatch.storage.schema import hosts

#: Hosts per statement of a seen-time flush (one transaction; the loop runs between them).
SEEN_FLUSH_SLICE = 500


async def write_seen_times(db: Database, params: Sequence[Mapping[str, Any]]) -> None:
    """Write `{"hid", "seen"}` pairs (in id order) in one transaction, never moving a
    seen_time back."""
    seen: Any = bindparam("seen", type_=hosts.c.seen_time.type)
    # Never move seen_time back: another node may have written a later check-in.
    newer = case(
        (or_(hosts.c.seen_time.is_(None), hosts.c.seen_time < seen), seen),
        else_=hosts.c.seen_time,
    )
    statement = update(hosts).where(hosts.c.id == bindparam("hid")).values(seen_time=newer)
    async with db.transaction() as conn:
        # In slices: the parameters of each are built on the event loop (about 30 us a
        # row), and one statement for 10,000 hosts would hold up every request for a tenth
        # of a second; between slices the loop serves them.
        for start in range(0, len(params), SEEN_FLUSH_SLICE):
            await conn.execute(statement, params[start : start + SEEN_FLUSH_SLICE])
