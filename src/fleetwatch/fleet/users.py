"""Users, password hashing (argon2) and API tokens (random, stored as SHA-256).

Tokens are of two kinds: `session` tokens from logging in, which expire after
`session_idle_timeout` seconds without use, and named `api` tokens for scripts, which last
until revoked. Both live in the database, so every node of a cluster sees the same state;
a token's last use is written back at most once per `touch_interval` (not on every request).
Setting a new password revokes every token of the user, on every node. Every revocation
(logout, a token deleted, a new password, the user deleted, a session found idle) is also
passed to `on_revoke`, so that streams opened with those tokens end
(`fleetwatch.fleet.stream_tokens`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update

from fleetwatch.fleet.errors import AuthFailed, Conflict, Invalid, NotFound
from fleetwatch.fleet.passwords import check_password
from fleetwatch.storage import Database
from fleetwatch.storage.schema import api_tokens, users

ROLES = ("admin", "maintainer", "observer")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
#: Default idle lifetime of a login session (seconds), as the setting's default.
SESSION_IDLE_TIMEOUT = 24 * 3600.0
#: A token's last-use stamp is written at most this often (seconds): idle expiry is exact
#: to within this, and a busy token costs one write a minute, not one per request.
TOUCH_INTERVAL = 60.0
TokenKind = Literal["session", "api"]


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


@dataclass(frozen=True)
class TokenOwner:
    """Who a bearer token authenticates, and the kind of token it is (`session` from a
    login, which the UI's cookie also holds, or a named `api` token)."""

    user: User
    kind: TokenKind


@dataclass(frozen=True)
class Revocation:
    """Tokens that stopped being valid: all of `user_id`'s, or those whose stored hash
    starts with `token_prefix` (of `user_id` when given too)."""

    reason: str
    user_id: int | None = None
    token_prefix: str | None = None


def hash_token(token: str) -> str:
    """Tokens are 256-bit random values, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


def _validate(email: str, password: str | None, role: str | None) -> None:
    if not _EMAIL.match(email):
        raise Invalid(f"email {email!r} is not an email address")
    if password is not None:
        check_password(password)
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


async def _nothing(_user_id: int) -> None:
    return None


class UserService:
    """Creates users, checks passwords and issues and resolves bearer tokens."""

    def __init__(
        self,
        db: Database,
        *,
        session_idle_timeout: float = SESSION_IDLE_TIMEOUT,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.session_idle_timeout = session_idle_timeout
        # A short timeout (tests, strict deployments) needs finer stamps to stay exact.
        self.touch_interval = min(TOUCH_INTERVAL, session_idle_timeout / 10)
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self._dummy_hash: str | None = None
        #: Told of every revocation, after its commit.
        self.on_revoke: Callable[[Revocation], None] = lambda _revocation: None
        #: Awaited after a user's roles changed or the user was deleted (their query
        #: tasks' scope follows: `fleetwatch.query.task_scopes`); must not raise.
        self.on_roles_change: Callable[[int], Awaitable[None]] = _nothing

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _dummy(self) -> str:
        """A hash of a random password with the hasher's parameters, verified against for
        unknown emails so that they take as long as a wrong password (no user enumeration)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        return self._dummy_hash

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
        password_hash = await self._hash(password)
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
        try:
            check_password(password, "admin_password (FLEETWATCH_ADMIN_PASSWORD)")
        except Invalid as exc:
            raise Invalid(f"cannot create the first admin: {exc}") from exc
        return await self.create(email, password, "admin")

    async def get(self, user_id: int) -> User:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return _user(row._mapping)

    async def some(self, user_ids: Collection[int]) -> dict[int, User]:
        """Those of these users that exist, by id."""
        wanted = sorted(set(user_ids))
        found: dict[int, User] = {}
        async with self.db.connect() as conn:
            for i in range(0, len(wanted), 500):
                rows = await conn.execute(select(users).where(users.c.id.in_(wanted[i : i + 500])))
                for row in rows:
                    user = _user(row._mapping)
                    found[user.id] = user
        return found

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
        revokes all their tokens (sessions and API tokens, on every node)."""
        current = await self.get(user_id)
        values: dict[str, Any] = {}
        if teams is not None:
            _validate_teams(teams)
            values["teams"] = [{"id": t.team_id, "role": t.role} for t in teams]
        if name is not None:
            values["name"] = name
        if password is not None:
            _validate(current.email, password, None)
            values["password_hash"] = await self._hash(password)
        if not isinstance(global_role, Unset):
            _validate(current.email, None, global_role)
            values["global_role"] = global_role
        if values:
            async with self.db.transaction() as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(**values))
                if password is not None:
                    await conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            if password is not None:
                self.on_revoke(Revocation("the user's password changed", user_id=user_id))
            if teams is not None or not isinstance(global_role, Unset):
                await self.on_roles_change(user_id)
        return await self.get(user_id)

    async def delete(self, user_id: int) -> None:
        """Delete a user; their tokens stop working at once."""
        async with self.db.transaction() as conn:
            await conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            result = await conn.execute(delete(users).where(users.c.id == user_id))
        if result.rowcount == 0:
            raise NotFound(f"no user with id {user_id}")
        self.on_revoke(Revocation("the user was deleted", user_id=user_id))
        await self.on_roles_change(user_id)

    async def authenticate(self, email: str, password: str) -> User:
        """The user with these credentials; AuthFailed (same message either way) if wrong."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(select(users).where(users.c.email == email.strip().lower()))
            ).first()
        # An unknown email is verified against a dummy hash: the same argon2 work as a
        # wrong password, so the answer time does not tell which accounts exist.
        stored = row._mapping["password_hash"] if row is not None else await self._dummy()
        try:
            await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError) as exc:
            raise AuthFailed("wrong email or password") from exc
        if row is None:  # cannot happen: nobody knows the dummy's password
            raise AuthFailed("wrong email or password")
        return _user(row._mapping)

    async def check_own_password(self, user_id: int, password: str) -> None:
        """AuthFailed unless `password` is the user's current one."""
        async with self.db.connect() as conn:
            stored = (
                await conn.execute(select(users.c.password_hash).where(users.c.id == user_id))
            ).scalar_one_or_none()
        if stored is None:
            raise NotFound(f"no user with id {user_id}")
        try:
            await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError) as exc:
            raise AuthFailed("old_password is not your current password") from exc

    async def issue_token(
        self, user_id: int, name: str = "session", kind: TokenKind = "session"
    ) -> str:
        """A new bearer token for the user (shown once; only its hash is stored). A
        `session` token expires when idle; an `api` token lasts until revoked."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                insert(api_tokens),
                [
                    {
                        "token_hash": hash_token(token),
                        "user_id": user_id,
                        "name": name,
                        "kind": kind,
                        "created_at": now,
                        "last_used_at": now,
                    }
                ],
            )
        return token

    async def revoke_token(self, token: str) -> None:
        """Revoke one token (logout)."""
        token_hash = hash_token(token)
        async with self.db.transaction() as conn:
            await conn.execute(delete(api_tokens).where(api_tokens.c.token_hash == token_hash))
        self.on_revoke(Revocation("the token was revoked (logged out)", token_prefix=token_hash))

    async def list_tokens(self, user_id: int) -> list[dict[str, Any]]:
        """The user's tokens: an id (a prefix of the stored hash), name and creation time."""
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(api_tokens)
                .where(api_tokens.c.user_id == user_id)
                .order_by(api_tokens.c.created_at)
            )
            return [
                {
                    "id": r.token_hash[:16],
                    "name": r.name,
                    "kind": r.kind,
                    "created_at": float(r.created_at),
                    "last_used_at": float(r.last_used_at),
                }
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
        self.on_revoke(Revocation("the token was revoked", user_id=user_id, token_prefix=token_id))

    async def valid_token_hashes(self, token_hashes: Collection[str]) -> set[str]:
        """Those of `token_hashes` that still authenticate: not revoked and, for a login
        session, not idle for longer than `session_idle_timeout` (read only: nothing is
        touched or deleted)."""
        wanted = list(token_hashes)
        valid: set[str] = set()
        now = self.clock()
        async with self.db.connect() as conn:
            for i in range(0, len(wanted), 500):
                rows = await conn.execute(
                    select(
                        api_tokens.c.token_hash, api_tokens.c.kind, api_tokens.c.last_used_at
                    ).where(api_tokens.c.token_hash.in_(wanted[i : i + 500]))
                )
                for row in rows:
                    idle = now - float(row.last_used_at)
                    if row.kind != "session" or idle <= self.session_idle_timeout:
                        valid.add(str(row.token_hash))
        return valid

    async def user_for_token(self, token: str) -> User:
        """The user a bearer token belongs to; AuthFailed if unknown, revoked or (a login
        session) idle for longer than `session_idle_timeout`."""
        return (await self.owner_of_token(token)).user

    async def owner_of_token(self, token: str) -> TokenOwner:
        """The user of a bearer token and the token's kind; AuthFailed as `user_for_token`."""
        token_hash = hash_token(token)
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(users, api_tokens.c.kind, api_tokens.c.last_used_at)
                    .join(api_tokens, api_tokens.c.user_id == users.c.id)
                    .where(api_tokens.c.token_hash == token_hash)
                )
            ).first()
        if row is None:
            raise AuthFailed("the token is unknown or revoked; log in again")
        now = self.clock()
        idle = now - float(row.last_used_at)
        if row.kind == "session" and idle > self.session_idle_timeout:
            async with self.db.transaction() as conn:
                await conn.execute(delete(api_tokens).where(api_tokens.c.token_hash == token_hash))
            expired = f"the session expired after {self.session_idle_timeout:g} s without use"
            self.on_revoke(Revocation(expired, token_prefix=token_hash))
            raise AuthFailed(f"{expired}; log in again")
        if idle >= self.touch_interval:
            async with self.db.transaction() as conn:
                await conn.execute(
                    update(api_tokens)
                    .where(api_tokens.c.token_hash == token_hash)
                    .values(last_used_at=now)
                )
        kind: TokenKind = "api" if row.kind == "api" else "session"
        return TokenOwner(_user(row._mapping), kind)
