"""Users: no account enumeration by timing, idle session expiry, revocation on a new
password, and the password policy where passwords are set (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import insert, select

from fleetwatch.fleet.errors import AuthFailed, Invalid
from fleetwatch.fleet.users import TOUCH_INTERVAL, Revocation, UserService, hash_token
from fleetwatch.storage import Database
from fleetwatch.storage.schema import api_tokens, users

STRONG = "a strong enough passphrase"


class CountingHasher(PasswordHasher):
    """argon2 as usual, counting verifications (the costly step whose time leaked)."""

    def __init__(self) -> None:
        super().__init__()
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_unknown_email_costs_a_password_verification_like_a_known_one(
    db: Database,
) -> None:
    hasher = CountingHasher()
    service = UserService(db, hasher=hasher)
    await service.create("known@x.org", STRONG)
    with pytest.raises(AuthFailed, match="wrong email or password") as known:
        await service.authenticate("known@x.org", "not the password")
    assert hasher.verified == 1
    with pytest.raises(AuthFailed, match="wrong email or password") as unknown:
        await service.authenticate("nobody@x.org", "not the password")
    assert hasher.verified == 2  # the dummy hash, with the same parameters
    assert str(known.value) == str(unknown.value)
    await service.authenticate("known@x.org", STRONG)


async def test_a_session_expires_after_the_idle_timeout_since_its_last_use(db: Database) -> None:
    clock = Clock()
    service = UserService(db, session_idle_timeout=86400.0, clock=clock)
    user = await service.create("u@x.org", STRONG)
    session = await service.issue_token(user.id)
    script = await service.issue_token(user.id, "ci", kind="api")
    clock.now += 80_000
    assert (await service.user_for_token(session)).id == user.id  # used: idle from here
    clock.now += 80_000  # 160,000 s after login but only 80,000 s idle
    assert (await service.user_for_token(session)).id == user.id
    clock.now += 86_401
    with pytest.raises(AuthFailed, match="expired after 86400 s without use"):
        await service.user_for_token(session)
    clock.now -= 86_401  # an expired session is gone for good, not only refused
    with pytest.raises(AuthFailed, match="unknown or revoked"):
        await service.user_for_token(session)
    clock.now += 10 * 86400
    assert (await service.user_for_token(script)).id == user.id  # API tokens do not idle out


async def test_last_use_is_written_at_most_once_a_touch_interval(db: Database) -> None:
    clock = Clock()
    service = UserService(db, clock=clock)
    user = await service.create("u@x.org", STRONG)
    token = await service.issue_token(user.id)

    async def last_used() -> float:
        async with db.connect() as conn:
            rows = await conn.execute(select(api_tokens.c.last_used_at))
            return float(rows.scalar_one())

    start = await last_used()
    for _ in range(5):
        clock.now += TOUCH_INTERVAL / 10
        await service.user_for_token(token)
    assert await last_used() == start  # five uses in half a minute: no write
    clock.now += TOUCH_INTERVAL
    await service.user_for_token(token)
    assert await last_used() == clock.now


async def test_a_new_password_revokes_every_token_of_the_user_only(db: Database) -> None:
    service = UserService(db)
    user = await service.create("u@x.org", STRONG)
    other = await service.create("other@x.org", STRONG)
    tokens = [await service.issue_token(user.id), await service.issue_token(user.id, "ci", "api")]
    kept = await service.issue_token(other.id)
    await service.update(user.id, password="another strong passphrase")
    for token in tokens:
        with pytest.raises(AuthFailed):
            await service.user_for_token(token)
    assert (await service.user_for_token(kept)).id == other.id


async def test_weak_passwords_are_refused_when_set_but_old_ones_still_log_in(
    db: Database,
) -> None:
    service = UserService(db)
    with pytest.raises(Invalid, match="at least 12 characters"):
        await service.create("u@x.org", "aaaaaaaa")
    with pytest.raises(Invalid, match="commonly used"):
        await service.create("u@x.org", "Qwerty123456")
    user = await service.create("u@x.org", STRONG)
    with pytest.raises(Invalid, match="at least 12 characters"):
        await service.update(user.id, password="short-pw")
    # A user created before the policy, with a weak password, can still log in.
    row: dict[str, Any] = {
        "email": "old@x.org",
        "name": "",
        "password_hash": PasswordHasher().hash("aaaaaaaa"),
        "global_role": "observer",
        "teams": [],
        "created_at": 0.0,
    }
    async with db.transaction() as conn:
        await conn.execute(insert(users), [row])
    assert (await service.authenticate("old@x.org", "aaaaaaaa")).email == "old@x.org"


async def test_the_first_admin_from_the_settings_needs_a_strong_password(db: Database) -> None:
    service = UserService(db)
    with pytest.raises(Invalid, match=r"first admin: admin_password .* at least 12"):
        await service.ensure_admin("admin@x.org", "password")
    assert await service.count() == 0
    assert (await service.ensure_admin("admin@x.org", STRONG)) is not None


async def test_every_revocation_is_announced_and_valid_token_hashes_tells_which_live(
    db: Database,
) -> None:
    """Logout, token DELETE, a new password, an idle session and a deleted user each reach
    `on_revoke` (which ends the streams opened with those tokens); `valid_token_hashes`
    agrees with `user_for_token` without touching anything."""
    clock = Clock()
    service = UserService(db, session_idle_timeout=100.0, clock=clock)
    told: list[Revocation] = []
    service.on_revoke = told.append
    user = await service.create("u@x.org", STRONG)
    session, api = (
        await service.issue_token(user.id),
        await service.issue_token(user.id, "ci", "api"),
    )
    hashes = {hash_token(session), hash_token(api)}
    assert await service.valid_token_hashes(hashes | {"0" * 64}) == hashes
    clock.now += 101  # the session is idle too long; the API token does not expire
    assert await service.valid_token_hashes(hashes) == {hash_token(api)}
    with pytest.raises(AuthFailed, match="expired"):
        await service.user_for_token(session)
    assert told[-1].token_prefix == hash_token(session) and "expired" in told[-1].reason
    await service.revoke_token(api)
    assert told[-1] == Revocation(
        "the token was revoked (logged out)", token_prefix=hash_token(api)
    )
    api = await service.issue_token(user.id, "ci", "api")
    token_id = (await service.list_tokens(user.id))[-1]["id"]
    await service.revoke_token_id(user.id, token_id)
    assert told[-1] == Revocation("the token was revoked", user.id, token_id)
    assert hash_token(api).startswith(token_id)
    await service.update(user.id, name="renamed")  # no new password: nothing revoked
    assert len(told) == 3
    await service.update(user.id, password="another strong passphrase")
    assert told[-1] == Revocation("the user's password changed", user.id)
    await service.delete(user.id)
    assert told[-1] == Revocation("the user was deleted", user.id)
    assert await service.valid_token_hashes(hashes) == set()
