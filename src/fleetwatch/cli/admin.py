"""`fleetwatch user ...` and `fleetwatch secret ...`: administer the store directly.

They open the same database as `fleetwatch serve` (same --data-dir / --database-url /
--config flags and FLEETWATCH_* variables), so they work before the first start and without
a token. Running servers re-read the enroll secrets every half second, so `fleetwatch secret`
changes apply to every node within a second; `secret list` prints what
GET /api/v1/fleet/secrets shows (the global secrets; team secrets are listed per team).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from fleetwatch.cli.root import app
from fleetwatch.cli.settings_options import (
    ConfigOpt,
    DatabaseUrlOpt,
    DataDirOpt,
    build_settings,
)
from fleetwatch.config import Settings
from fleetwatch.fleet.errors import FleetError
from fleetwatch.fleet.secrets import EnrollSecretService
from fleetwatch.fleet.users import ROLES, UserService
from fleetwatch.storage import Database

T = TypeVar("T")

user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
secret_app = typer.Typer(help="Manage enroll secrets.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(secret_app, name="secret")


def _settings(data_dir: Path | None, database_url: str | None, config: Path | None) -> Settings:
    # The server's own precedence (flags > FLEETWATCH_* > --config file), so the command
    # opens the database the server uses.
    return build_settings(config, data_dir=data_dir, database_url=database_url)


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url())
        try:
            await db.migrate()
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except FleetError as exc:
        typer.echo(f"fleetwatch: {exc}", err=True)
        raise typer.Exit(1) from exc


@user_app.command("create")
def user_create(
    email: str = typer.Option(..., "--email", help="The user's email (their login)."),
    password: str = typer.Option(
        ...,
        "--password",
        prompt=True,
        hide_input=True,
        help="At least 12 characters, not a common password.",
    ),
    role: str = typer.Option("observer", "--role", help=f"One of {', '.join(ROLES)}."),
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Create a user."""

    async def work(db: Database) -> str:
        user = await UserService(db).create(email, password, role)
        return f"created user {user.id} {user.email} ({user.global_role})"

    typer.echo(_run(_settings(data_dir, database_url, config), work))


@user_app.command("list")
def user_list(
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """List users."""

    async def work(db: Database) -> list[str]:
        return [f"{u.id}\t{u.email}\t{u.global_role}" for u in await UserService(db).all_users()]

    for line in _run(_settings(data_dir, database_url, config), work):
        typer.echo(line)


@secret_app.command("add")
def secret_add(
    secret: str | None = typer.Argument(
        None, help="The secret (at least 16 characters); a random one if omitted."
    ),
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Add a global enroll secret and print it (running servers accept it within a second)."""

    async def work(db: Database) -> str:
        return (await EnrollSecretService(db).add(secret)).secret

    typer.echo(_run(_settings(data_dir, database_url, config), work))


@secret_app.command("list")
def secret_list(
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """List the global enroll secrets (as GET /api/v1/fleet/secrets does), oldest first."""

    async def work(db: Database) -> list[str]:
        return [s.secret for s in await EnrollSecretService(db).list(None)]

    for line in _run(_settings(data_dir, database_url, config), work):
        typer.echo(line)


@secret_app.command("revoke")
def secret_revoke(
    secret: str = typer.Argument(..., help="The secret to revoke."),
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Revoke a global enroll secret: running servers refuse it within a second (enrolled
    hosts keep working)."""
    settings = _settings(data_dir, database_url, config)

    async def work(db: Database) -> str:
        await EnrollSecretService(db).revoke(secret)
        return "revoked"

    typer.echo(_run(settings, work))
    if settings.enroll_secret is not None and settings.enroll_secret.strip() == secret.strip():
        typer.echo(
            "fleetwatch: this is the enroll_secret setting (FLEETWATCH_ENROLL_SECRET); a server "
            "started with it adds it again: change or remove that setting",
            err=True,
        )
