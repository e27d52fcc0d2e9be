"""`fleetwatch user ...` and `fleetwatch secret ...`: administer the store directly.

They open the same database as `fleetwatch serve` (same --data-dir / --database-url flags
and FLEETWATCH_* variables), so they work before the first start and without a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from fleetwatch.cli import app
from fleetwatch.cli.settings_options import DatabaseUrlOpt, DataDirOpt, build_settings
from fleetwatch.fleet.errors import FleetError
from fleetwatch.fleet.secrets import EnrollSecretService
from fleetwatch.fleet.users import ROLES, UserService
from fleetwatch.storage import Database

T = TypeVar("T")

user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
secret_app = typer.Typer(help="Manage enroll secrets.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(secret_app, name="secret")


def _run(
    data_dir: Path | None, database_url: str | None, work: Callable[[Database], Awaitable[T]]
) -> T:
    settings = build_settings(data_dir=data_dir, database_url=database_url)

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
        ..., "--password", prompt=True, hide_input=True, help="At least 8 characters."
    ),
    role: str = typer.Option("observer", "--role", help=f"One of {', '.join(ROLES)}."),
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
) -> None:
    """Create a user."""

    async def work(db: Database) -> str:
        user = await UserService(db).create(email, password, role)
        return f"created user {user.id} {user.email} ({user.global_role})"

    typer.echo(_run(data_dir, database_url, work))


@user_app.command("list")
def user_list(
    data_dir: Path | None = DataDirOpt, database_url: str | None = DatabaseUrlOpt
) -> None:
    """List users."""

    async def work(db: Database) -> list[str]:
        return [f"{u.id}\t{u.email}\t{u.global_role}" for u in await UserService(db).all_users()]

    for line in _run(data_dir, database_url, work):
        typer.echo(line)


@secret_app.command("add")
def secret_add(
    secret: str | None = typer.Argument(None, help="The secret; a random one if omitted."),
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
) -> None:
    """Add a global enroll secret and print it."""

    async def work(db: Database) -> str:
        service = EnrollSecretService(db)
        await service.load()
        return (await service.add(secret)).secret

    typer.echo(_run(data_dir, database_url, work))


@secret_app.command("list")
def secret_list(
    data_dir: Path | None = DataDirOpt, database_url: str | None = DatabaseUrlOpt
) -> None:
    """List the global enroll secrets."""

    async def work(db: Database) -> list[str]:
        service = EnrollSecretService(db)
        await service.load()
        return [s.secret for s in service.list(None)]

    for line in _run(data_dir, database_url, work):
        typer.echo(line)


@secret_app.command("revoke")
def secret_revoke(
    secret: str = typer.Argument(..., help="The secret to revoke."),
    data_dir: Path | None = DataDirOpt,
    database_url: str | None = DatabaseUrlOpt,
) -> None:
    """Revoke a global enroll secret (enrolled hosts keep working)."""

    async def work(db: Database) -> str:
        service = EnrollSecretService(db)
        await service.load()
        await service.revoke(secret)
        return "revoked"

    typer.echo(_run(data_dir, database_url, work))
