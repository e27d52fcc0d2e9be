"""The `policies` table."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, insert, select, update

from fleetwatch.policies.model import Policy
from fleetwatch.storage import Database
from fleetwatch.storage.schema import policies


class PolicyStore:
    """Reads and writes the policy tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[Policy]:
        async with self.db.connect() as conn:
            rows = [r._mapping for r in await conn.execute(select(policies))]
        return [policy_from_row(r) for r in rows]

    async def get(self, policy_id: int) -> Policy | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(policies).where(policies.c.id == policy_id))).first()
        return None if row is None else policy_from_row(row._mapping)

    async def insert(self, fields: dict[str, Any]) -> Policy:
        now = time.time()
        row = {**fields, "created_at": now, "updated_at": now}
        async with self.db.transaction() as conn:
            result = await conn.execute(insert(policies).returning(policies.c.id), [row])
            policy_id = int(result.scalar_one())
        return Policy(id=policy_id, **row)

    async def update(self, policy_id: int, values: dict[str, Any]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(update(policies).where(policies.c.id == policy_id).values(**values))

    async def delete(self, policy_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(delete(policies).where(policies.c.id == policy_id))


def policy_from_row(row: Any) -> Policy:
    team = row["team_id"]
    return Policy(
        id=int(row["id"]),
        name=str(row["name"]),
        description=str(row["description"]),
        resolution=str(row["resolution"]),
        query=str(row["query"]),
        platform=str(row["platform"]),
        interval=int(row["interval"]),
        team_id=None if team is None else int(team),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )
