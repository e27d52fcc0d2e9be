"""Expiry: documents whose `documentExpirationTimeMicros` has passed are deleted.

Each expired document is deleted through the DocumentIndex as an ordinary DELETE change
(the last state, `documentUpdateAction` DELETE), so continuous queries and subscribers see
the expiry like any delete. The delete is conditional on the version the sweep read: a
document updated meanwhile (e.g. its expiry extended) is left alone and re-checked.

An expiry is still told apart from a delete, by the change itself (so also when read back
from the log): `is_expiry` is true for a DELETE whose last state has an expiration time at
or before the change's own time. A client's DELETE of a document already past its expiry,
not yet swept, therefore counts as its expiry too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import and_, select

from fleetwatch.index.document import EXPIRATION, Action, Change, Write, now_micros
from fleetwatch.index.store import DocumentIndex
from fleetwatch.periodic import Periodic
from fleetwatch.storage.schema import documents

log = logging.getLogger(__name__)

#: Documents deleted per transaction by one sweep step.
_BATCH = 500


def is_expiry(change: Change) -> bool:
    """Whether `change` deleted a document because its expiration time had passed."""
    if change.action is not Action.DELETE:
        return False
    expiration = change.body.get(EXPIRATION)
    return isinstance(expiration, int) and 0 < expiration <= change.time_micros


class ExpirySweeper:
    """A background task that deletes expired documents every `interval` seconds.

    It also wakes early when a committed change carries an expiry that is already due (a
    PATCH setting `documentExpirationTimeMicros` to the past expires at once, as in Xenon).
    """

    def __init__(
        self,
        index: DocumentIndex,
        interval: float = 1.0,
        may_run: Callable[[], bool] = lambda: True,
    ) -> None:
        self.index = index
        self.interval = interval
        #: On a cluster, one node sweeps: the holder of the expiry lease.
        self.may_run = may_run
        self._loop = Periodic(
            "fleetwatch-expiry",
            self._step,
            lambda: self.interval,
            failure="document expiry sweep failed; retried next interval",
        )
        #: Documents this sweeper has deleted since it started (for tests and metrics).
        self.expired_count = 0

    async def sweep_once(self, now: int | None = None) -> int:
        """Delete every document expired at `now` (microseconds); return how many."""
        cutoff = now_micros() if now is None else now
        total = 0
        while True:
            async with self.index.db.connect() as conn:
                rows = (
                    await conn.execute(
                        select(documents.c.self_link, documents.c.version)
                        .where(
                            and_(
                                documents.c.deleted.is_(False),
                                documents.c.expiration_micros > 0,
                                documents.c.expiration_micros <= cutoff,
                            )
                        )
                        .order_by(documents.c.expiration_micros)
                        .limit(_BATCH)
                    )
                ).all()
            if not rows:
                return total
            outcomes = await self.index.apply(
                [
                    Write(Action.DELETE, str(link), expected_version=int(version))
                    for link, version in rows
                ]
            )
            deleted = sum(1 for o in outcomes if isinstance(o, Change))
            total += deleted
            self.expired_count += deleted
            if len(rows) < _BATCH or deleted == 0:
                return total

    def _on_changes(self, batch: Sequence[Change]) -> None:
        now = now_micros()
        for change in batch:
            if change.action is Action.DELETE:
                continue
            expiration = change.body.get(EXPIRATION)
            if isinstance(expiration, int) and 0 < expiration <= now:
                self._loop.poke()
                return

    def start(self) -> None:
        """Start sweeping in the background."""
        if not self._loop.running:
            self.index.add_listener(self._on_changes)
            self._loop.start()

    async def stop(self) -> None:
        """Stop sweeping (waits for the current step)."""
        if not self._loop.running:
            return
        self.index.remove_listener(self._on_changes)
        await self._loop.stop()

    async def _step(self) -> None:
        if self.may_run():
            await self.sweep_once()
