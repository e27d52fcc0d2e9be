"""Change-log retention: changes older than the retention period are trimmed.

Only a prefix of the log is removed, and never the newest entry, so sequence numbers never
restart (SQLite would reuse a freed maximum) and a reader can tell "trimmed" from "empty".
Subscribers resuming from a sequence older than the first one kept are told so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import delete, func, select

from fleetwatch.index.document import now_micros
from fleetwatch.periodic import Periodic
from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import changes

log = logging.getLogger(__name__)

#: Changes deleted per transaction, so a trim never holds the write lock for long.
_CHUNK = 10_000


class ChangeLogRetention:
    """A background task that trims the change log to `retention` seconds."""

    def __init__(
        self,
        db: Database,
        retention: float,
        interval: float = 60.0,
        may_run: Callable[[], bool] = lambda: True,
    ) -> None:
        self.db = db
        self.retention = retention
        self.interval = interval
        #: On a cluster, one node trims: the holder of the retention lease.
        self.may_run = may_run
        self._loop = Periodic(
            "fleetwatch-retention",
            self._step,
            lambda: self.interval,
            failure="change log trim failed; retried next interval",
            run_first=True,
        )

    async def trim_once(self, now: int | None = None) -> int:
        """Delete changes older than the retention at `now` (microseconds); return how many."""
        current = now_micros() if now is None else now
        cutoff = current - int(self.retention * 1_000_000)
        async with self.db.connect() as conn:
            newest = (await conn.execute(select(func.max(changes.c.seq)))).scalar()
            bound = (
                await conn.execute(
                    select(func.max(changes.c.seq)).where(changes.c.time_micros < cutoff)
                )
            ).scalar()
            oldest = (await conn.execute(select(func.min(changes.c.seq)))).scalar()
        if newest is None or bound is None or oldest is None:
            return 0
        bound = min(int(bound), int(newest) - 1)
        removed = 0
        start = int(oldest)
        while start <= bound:
            upper = min(bound, start + _CHUNK - 1)
            async with self.db.transaction() as conn:
                result = await conn.execute(delete(changes).where(changes.c.seq <= upper))
                removed += int(result.rowcount or 0)
            start = upper + 1
        return removed

    def start(self) -> None:
        """Start trimming in the background."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop trimming."""
        await self._loop.stop()

    async def _step(self) -> None:
        if self.may_run():
            await self.trim_once()
