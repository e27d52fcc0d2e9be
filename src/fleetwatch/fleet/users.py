"""Users, password hashing (argon2) and API tokens (random, stored as SHA-256)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update

from fleetwatch.fleet.errors import AuthFailed, Conflict, Invalid, NotFound
from fleetwatch.storage import Database
from fleetwatch.storage.schema import api_tokens, users

ROLES = ("admin", "maintainer", "observer")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD = 8
_hasher = PasswordHasher()


class Unset(Enum):
    """Marks an argument that was not given (distinct from an explicit None)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True)
class TeamRole:
    """A user's role on one team."""

    team_id: int
    role: str


@dataclass(frozen=True)
class User:
    """A user of the API and UI."""

    id: int
    email: str
    name: str
    global_role: str | None
    teams: tuple[TeamRole, ...] = field(default=())
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The user as the API shows it (never the password hash)."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "global_role": self.global_role,
            "teams": [{"id": t.team_id, "role": t.role} for t in self.teams],
            "created_at": self.created_at,
        }


def hash_token(token: str) -> str:
    """Tokens are 256-bit random values, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


def _validate(email: str, password: str | None, role: str | None) -> None:
    if not _EMAIL.match(email):
        raise Invalid(f"email {email!r} is not an email address")
    if password is not None and len(password) < MIN_PASSWORD:
        raise Invalid(f"password must be at least {MIN_PASSWORD} characters")
    if role is not None and role not in ROLES:
        raise Invalid(f"global_role must be one of {', '.join(ROLES)} or null")


def _validate_teams(teams: list[TeamRole]) -> None:
    for team in teams:
        if team.role not in ROLES:
            raise Invalid(f"team role must be one of {', '.join(ROLES)}")
    if len({t.team_id for t in teams}) != len(teams):
        raise Invalid("teams: a team may appear only once")


def _teams(raw: Any) -> tuple[TeamRole, ...]:
    out = []
    for item in raw or []:
        out.append(TeamRole(team_id=int(item["id"]), role=str(item["role"])))
    return tuple(out)


def _user(row: Any) -> User:
    return User(
        id=int(row["id"]),
        email=row["email"],
        name=row["name"],
        global_role=row["global_role"],
        teams=_teams(row["teams"]),
        created_at=float(row["created_at"]),
    )


class UserService:
    """Creates users, checks passwords and issues and resolves bearer tokens."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        email: str,
        password: str,
        global_role: str | None = "observer",
        *,
        name: str = "",
        teams: list[TeamRole] | None = None,
    ) -> User:
        """Create a user; the password is stored only as an argon2 hash."""
        email = email.strip().lower()
        _validate(email, password, global_role)
        _validate_teams(teams or [])
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        row = {
            "email": email,
            "name": name,
            "password_hash": password_hash,
            "global_role": global_role,
            "teams": [{"id": t.team_id, "role": t.role} for t in teams or []],
            "created_at": time.time(),
        }
        async with self.db.transaction() as conn:
            exists = await conn.execute(select(users.c.id).where(users.c.email == email))
            if exists.first() is not None:
                raise Conflict(f"a user with email {email} already exists")
            result = await conn.execute(insert(users).returning(users.c.id), [row])
            user_id = int(result.scalar_one())
        return await self.get(user_id)

    async def count(self) -> int:
        async with self.db.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())

    async def ensure_admin(self, email: str | None, password: str | None) -> User | None:
        """Create the first admin from settings, only when the database has no user yet."""
        if not email or not password or await self.count() > 0:
            return None
        return await self.create(email, password, "admin")

    async def get(self, user_id: int) -> User:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return _user(row._mapping)

    async def all_users(self) -> list[User]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(users).order_by(users.c.id))
            return [_user(r._mapping) for r in rows]

    async def update(
        self,
        user_id: int,
        *,
        name: str | None = None,
        password: str | None = None,
        global_role: str | None | Unset = UNSET,
        teams: list[TeamRole] | None = None,
    ) -> User:
        """Change a user's name, password, global role or team roles; a new password
        revokes their tokens."""
        current = await self.get(user_id)
        values: dict[str, Any] = {}
        if teams is not None:
            _validate_teams(teams)
            values["teams"] = [{"id": t.team_id, "role": t.role} for t in teams]
        if name is not None:
            values["name"] = name
        if password is not None:
            _validate(current.email, password, None)
            values["password_hash"] = await asyncio.to_thread(_hasher.hash, password)
        if not isinstance(global_role, Unset):
            _validate(current.email, None, global_role)
            values["global_role"] = global_role
        if values:
            async with self.db.transaction() as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(**values))
                if password is not None:
                    await conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
        return await self.get(user_id)

    async def delete(self, user_id: int) -> None:
        """Delete a user; their tokens stop working at once."""
        async with self.db.transaction() as conn:
            await conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            result = await conn.execute(delete(users).where(users.c.id == user_id))
        if result.rowcount == 0:
            raise NotFound(f"no user with id {user_id}")

    async def authenticate(self, email: str, password: str) -> User:
        """The user with these credentials; AuthFailed (same message either way) if wrong."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(select(users).where(users.c.email == email.strip().lower()))
            ).first()
        stored = row._mapping["password_hash"] if row is not None else None
        try:
            if stored is None:
                raise VerificationError("unknown user")
            await asyncio.to_thread(_hasher.verify, stored, password)
        except (VerificationError, InvalidHashError) as exc:
            raise AuthFailed("wrong email or password") from exc
        assert row is not None
        return _user(row._mapping)

    async def issue_token(self, user_id: int, name: str = "session") -> str:
        """A new bearer token for the user (shown once; only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        async with self.db.transaction() as conn:
            await conn.execute(
                insert(api_tokens),
                [
                    {
                        "token_hash": hash_token(token),
                        "user_id": user_id,
                        "name": name,
                        "created_at": time.time(),
                    }
                ],
            )
        return token

    async def revoke_token(self, token: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                delete(api_tokens).where(api_tokens.c.token_hash == hash_token(token))
            )

    async def list_tokens(self, user_id: int) -> list[dict[str, Any]]:
        """The user's tokens: an id (a prefix of the stored hash), name and creation time."""
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(api_tokens)
                .where(api_tokens.c.user_id == user_id)
                .order_by(api_tokens.c.created_at)
            )
            return [
                {"id": r.token_hash[:16], "name": r.name, "created_at": float(r.created_at)}
                for r in rows
            ]

    async def revoke_token_id(self, user_id: int, token_id: str) -> None:
        """Revoke one of the user's tokens by the id `list_tokens` shows."""
        if len(token_id) != 16 or not all(c in "0123456789abcdef" for c in token_id):
            raise NotFound(f"no token with id {token_id}")
        async with self.db.transaction() as conn:
            result = await conn.execute(
                delete(api_tokens).where(
                    api_tokens.c.user_id == user_id,
                    api_tokens.c.token_hash.like(token_id + "%"),
                )
            )
        if result.rowcount == 0:
            raise NotFound(f"no token with id {token_id}")

    async def user_for_token(self, token: str) -> User:
        """The user a bearer token belongs to; AuthFailed if unknown or revoked."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(users)
                    .join(api_tokens, api_tokens.c.user_id == users.c.id)
                    .where(api_tokens.c.token_hash == hash_token(token))
                )
            ).first()
        if row is None:
            raise AuthFailed("the token is unknown or revoked; log in again")
        return _user(row._mapping)
