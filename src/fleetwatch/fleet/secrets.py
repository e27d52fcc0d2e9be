"""Enroll secrets, global and per team: several may be valid at once; each can be revoked.

The valid secrets are cached in memory (enroll is an agent hot path during a roll-out) and
compared in constant time. On a cluster a change is announced to the other nodes, which
reload (`Invalidations`); an unknown secret also reloads once, at most every second, so a
secret added on another node works before its announcement arrives.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from fleetwatch.bus.bus import Invalidations
from fleetwatch.fleet.errors import Conflict, Invalid, NotFound
from fleetwatch.storage import Database
from fleetwatch.storage.schema import enroll_secrets

MAX_SECRET_LENGTH = 255
#: The invalidation topic of the enroll secrets table.
TOPIC = "enroll_secrets"
#: Least seconds between two reloads caused by unknown secrets (a guessing agent).
MISS_RELOAD_INTERVAL = 1.0


@dataclass(frozen=True)
class EnrollSecret:
    """One enroll secret and the team hosts enrolling with it join (None: no team)."""

    secret: str
    team_id: int | None
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"secret": self.secret, "team_id": self.team_id, "created_at": self.created_at}


class EnrollSecretService:
    """Adds, lists, revokes and checks enroll secrets."""

    def __init__(self, db: Database, invalidations: Invalidations | None = None) -> None:
        self.db = db
        self.invalidations = invalidations
        self._cache: list[EnrollSecret] = []
        self._miss_reload_at = 0.0
        if invalidations is not None:
            invalidations.register(TOPIC, self.load)

    async def load(self) -> None:
        """Read every secret into memory (called at start and after each change)."""
        async with self.db.connect() as conn:
            rows = await conn.execute(select(enroll_secrets).order_by(enroll_secrets.c.created_at))
            self._cache = [EnrollSecret(r.secret, r.team_id, float(r.created_at)) for r in rows]

    def list(self, team_id: int | None = None) -> list[EnrollSecret]:
        """Secrets of one team, or the global ones when team_id is None."""
        return [s for s in self._cache if s.team_id == team_id]

    async def add(self, secret: str | None = None, team_id: int | None = None) -> EnrollSecret:
        """Add a secret (a random one when none is given)."""
        value = secret if secret is not None else secrets.token_hex(24)
        value = value.strip()
        if not value:
            raise Invalid("an enroll secret cannot be empty")
        if len(value) > MAX_SECRET_LENGTH:
            raise Invalid(f"an enroll secret is at most {MAX_SECRET_LENGTH} characters")
        if any(s.secret == value for s in self._cache):
            raise Conflict("that enroll secret already exists")
        row = EnrollSecret(value, team_id, time.time())
        async with self.db.transaction() as conn:
            await conn.execute(
                insert(enroll_secrets),
                [{"secret": row.secret, "team_id": team_id, "created_at": row.created_at}],
            )
        await self.refresh()
        return row

    async def ensure(self, secret: str) -> None:
        """Add a secret from settings unless it is already there."""
        if not any(s.secret == secret.strip() for s in self._cache):
            await self.add(secret)

    async def revoke(self, secret: str, team_id: int | None = None) -> None:
        """Revoke a secret: hosts can no longer enroll with it (enrolled hosts stay)."""
        async with self.db.transaction() as conn:
            query = delete(enroll_secrets).where(enroll_secrets.c.secret == secret)
            if team_id is None:
                query = query.where(enroll_secrets.c.team_id.is_(None))
            else:
                query = query.where(enroll_secrets.c.team_id == team_id)
            result = await conn.execute(query)
        if result.rowcount == 0:
            raise NotFound("no such enroll secret")
        await self.refresh()

    async def refresh(self) -> None:
        """Reload after a change of the table (also one made behind this service's back,
        like a team deleted with its secrets) and tell the other nodes to reload."""
        await self.load()
        if self.invalidations is not None:
            self.invalidations.changed(TOPIC)

    async def find(self, candidate: str) -> EnrollSecret | None:
        """`check`, and on a cluster a reload when no secret matches (at most one per
        `MISS_RELOAD_INTERVAL`): the secret may be new on another node."""
        found = self.check(candidate)
        if found is not None or self.invalidations is None:
            return found
        if not self.invalidations.bus.clustered:
            return None
        now = time.monotonic()
        if now - self._miss_reload_at < MISS_RELOAD_INTERVAL:
            return None
        self._miss_reload_at = now
        await self.load()
        return self.check(candidate)

    def check(self, candidate: str) -> EnrollSecret | None:
        """The secret matching `candidate`, compared in constant time; None if none does."""
        found: EnrollSecret | None = None
        given = candidate.strip().encode()
        for item in self._cache:
            if hmac.compare_digest(item.secret.encode(), given):
                found = item
        return found
