"""Enroll secrets, global and per team: several may be valid at once; each can be revoked.

The store is the one source of truth, whoever changes it (the API on any node, or
`fleetwatch secret` writing the database directly while servers run). Enroll is an agent hot
path during a roll-out, so each node checks against a copy in memory (compared in constant
time) that it re-reads from the store every `RELOAD_INTERVAL` seconds: a change made any
way takes effect on every node within a second. A change made through this service also
reloads at once here and is announced to the other nodes (`Invalidations`); on a cluster an
unknown secret also reloads once, at most every second. Listings read the store itself, so
the API and the CLI always show the same secrets.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, insert, select
from sqlalchemy.exc import IntegrityError

from fleetwatch.bus.bus import Invalidations
from fleetwatch.config import MIN_ENROLL_SECRET_LENGTH
from fleetwatch.fleet.errors import Conflict, Invalid, NotFound
from fleetwatch.periodic import Periodic
from fleetwatch.storage import Database
from fleetwatch.storage.schema import enroll_secrets

log = logging.getLogger(__name__)

MAX_SECRET_LENGTH = 255
#: Shortest secret that may be added: a short one can be guessed (generated ones are 48).
MIN_SECRET_LENGTH = MIN_ENROLL_SECRET_LENGTH
#: The invalidation topic of the enroll secrets table.
TOPIC = "enroll_secrets"
#: Least seconds between two reloads caused by unknown secrets (a guessing agent).
MISS_RELOAD_INTERVAL = 1.0
#: Seconds between two reads of the (small) secrets table, so changes made behind the
#: server's back (the CLI, another node whose announcement was lost) apply within a second.
RELOAD_INTERVAL = 0.5


@dataclass(frozen=True)
class EnrollSecret:
    """One enroll secret and the team hosts enrolling with it join (None: no team)."""

    secret: str
    team_id: int | None
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"secret": self.secret, "team_id": self.team_id, "created_at": self.created_at}


def validate_secret(value: str) -> str:
    """The secret without surrounding blanks, or Invalid saying what an acceptable one is."""
    value = value.strip()
    if not value:
        raise Invalid("an enroll secret cannot be empty")
    if len(value) < MIN_SECRET_LENGTH:
        raise Invalid(
            f"an enroll secret needs at least {MIN_SECRET_LENGTH} characters (this one has "
            f"{len(value)}); send a longer one, or none to have a random one generated"
        )
    if len(value) > MAX_SECRET_LENGTH:
        raise Invalid(f"an enroll secret is at most {MAX_SECRET_LENGTH} characters")
    return value


class EnrollSecretService:
    """Adds, lists, revokes and checks enroll secrets."""

    def __init__(self, db: Database, invalidations: Invalidations | None = None) -> None:
        self.db = db
        self.invalidations = invalidations
        self._cache: list[EnrollSecret] = []
        self._miss_reload_at = 0.0
        self._reloader = Periodic(
            "fleetwatch-secrets-reloader",
            self.load,
            RELOAD_INTERVAL,
            failure="reading the enroll secrets failed; the ones read last stay in use",
        )
        if invalidations is not None:
            invalidations.register(TOPIC, self.load)

    async def load(self) -> None:
        """Read every secret into memory (at start, every `RELOAD_INTERVAL`, after a change)."""
        self._cache = await self._read(select(enroll_secrets))

    async def _read(self, query: Select[Any]) -> list[EnrollSecret]:
        """The secrets `query` selects, oldest first."""
        async with self.db.connect() as conn:
            rows = await conn.execute(query.order_by(enroll_secrets.c.created_at))
            return [EnrollSecret(r.secret, r.team_id, float(r.created_at)) for r in rows]

    def start(self) -> None:
        """Re-read the table every `RELOAD_INTERVAL` seconds until `stop`; warn about
        secrets too short to be added today (they keep working)."""
        short = sum(1 for s in self._cache if len(s.secret) < MIN_SECRET_LENGTH)
        if short:
            log.warning(
                "%d enroll secret(s) are shorter than %d characters and easy to guess; they "
                "still enroll hosts: add a longer one (`fleetwatch secret add`), move the "
                "agents to it, then revoke the short ones",
                short,
                MIN_SECRET_LENGTH,
            )
        self._reloader.start()

    async def stop(self) -> None:
        """Stop re-reading the table."""
        await self._reloader.stop()

    async def list(self, team_id: int | None = None) -> list[EnrollSecret]:
        """Secrets of one team, or the global ones when team_id is None, from the store."""
        team = enroll_secrets.c.team_id
        match = team.is_(None) if team_id is None else team == team_id
        return await self._read(select(enroll_secrets).where(match))

    async def add(self, secret: str | None = None, team_id: int | None = None) -> EnrollSecret:
        """Add a secret (a random one when none is given)."""
        value = validate_secret(secret) if secret is not None else secrets.token_hex(24)
        row = EnrollSecret(value, team_id, time.time())
        try:
            async with self.db.transaction() as conn:
                exists = await conn.execute(
                    select(enroll_secrets.c.secret).where(enroll_secrets.c.secret == value)
                )
                if exists.first() is not None:
                    raise Conflict("that enroll secret already exists")
                await conn.execute(
                    insert(enroll_secrets),
                    [{"secret": row.secret, "team_id": team_id, "created_at": row.created_at}],
                )
        except IntegrityError:  # added by someone else between the check and the insert
            raise Conflict("that enroll secret already exists") from None
        await self.refresh()
        return row

    async def ensure(self, secret: str) -> None:
        """Add a secret from settings unless it is already there."""
        value = secret.strip()
        if not any(s.secret == value for s in await self._read(select(enroll_secrets))):
            await self.add(value)

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
