"""Durable positions of change-log readers: one `stream_checkpoints` row per reader name.

A reader that delivers outside the server (a destination) saves the sequence it has
delivered through, and resumes after it when it starts again, on this node or another. A
save never moves a cursor back: a node that lost its lease late and saves an older position
than the new holder's must not make the new holder send that stretch again.
"""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import stream_checkpoints


class StreamCursors:
    """Loads and saves named change-log positions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, name: str) -> int | None:
        """The saved sequence of `name`, or None if it never saved one."""
        async with self.db.connect() as conn:
            value = (
                await conn.execute(
                    select(stream_checkpoints.c.seq).where(stream_checkpoints.c.name == name)
                )
            ).scalar()
        return None if value is None else int(value)

    async def save(self, name: str, seq: int) -> None:
        """Record that `name` is done through `seq` (a lower value than saved is ignored)."""
        row = stream_checkpoints.c
        async with self.db.transaction() as conn:
            moved = await conn.execute(
                update(stream_checkpoints).where(row.name == name, row.seq <= seq).values(seq=seq)
            )
            if moved.rowcount:
                return
            exists = (await conn.execute(select(row.seq).where(row.name == name))).scalar()
            if exists is not None:
                return  # already further on
        try:
            async with self.db.transaction() as conn:
                await conn.execute(insert(stream_checkpoints).values(name=name, seq=seq))
        except IntegrityError:  # another node created it at the same moment: move it on
            async with self.db.transaction() as conn:
                await conn.execute(
                    update(stream_checkpoints)
                    .where(row.name == name, row.seq <= seq)
                    .values(seq=seq)
                )
