"""Migrations: one linear history, and the schema they build matches the Core tables."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Connection

from fleetwatch.storage import Database, metadata
from fleetwatch.storage.database import alembic_config
from fleetwatch.storage.schema import hosts


def test_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()


async def test_migrated_schema_has_every_table_and_column(db: Database) -> None:
    async with db.connect() as conn:
        found = await conn.run_sync(
            lambda sync: {
                t: {c["name"] for c in inspect(sync).get_columns(t)}
                for t in inspect(sync).get_table_names()
            }
        )
    for table in metadata.sorted_tables:
        assert table.name in found, table.name
        assert {c.name for c in table.columns} <= found[table.name], table.name


async def test_0006_makes_login_tokens_sessions_last_used_at_creation(database_url: str) -> None:
    from fleetwatch.config import async_database_url

    database = Database(async_database_url(database_url))

    def upgrade_to(revision: str) -> Callable[[Connection], None]:
        def run(sync_conn: Connection) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, revision)

        return run

    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(upgrade_to("0005"))
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, name, password_hash, global_role, teams,"
                    " created_at) VALUES (1, 'a@x.org', '', 'h', 'admin', '[]', 5)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO api_tokens (token_hash, user_id, name, created_at) VALUES"
                    " ('s', 1, 'session', 10), ('a', 1, 'ci', 20)"
                )
            )
        await database.migrate()
        async with database.connect() as conn:
            rows = await conn.execute(
                text("SELECT token_hash, kind, last_used_at FROM api_tokens ORDER BY token_hash")
            )
            assert [tuple(r) for r in rows] == [("a", "api", 20.0), ("s", "session", 10.0)]
    finally:
        await database.dispose()


async def test_ids_of_deleted_rows_are_never_handed_out_again(db: Database) -> None:
    """A team (user, host, label) made after the newest one was deleted gets a new id, not
    the deleted one's: documents and log rows still name that id."""
    async with db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO teams (name, description, created_at)"
                " VALUES ('a', '', 1), ('b', '', 2)"
            )
        )
        newest = (await conn.execute(text("SELECT max(id) FROM teams"))).scalar_one()
        await conn.execute(text("DELETE FROM teams WHERE id = :id"), {"id": newest})
        await conn.execute(
            text("INSERT INTO teams (name, description, created_at) VALUES ('c', '', 3)")
        )
        made = (await conn.execute(text("SELECT id FROM teams WHERE name = 'c'"))).scalar_one()
    assert made > newest


async def test_0007_rebuilds_tables_keeping_every_row_and_reference(database_url: str) -> None:
    from fleetwatch.config import async_database_url

    database = Database(async_database_url(database_url))
    rows = {
        "teams": "INSERT INTO teams (id, name, description, created_at) VALUES (1, 't', '', 1)",
        "users": "INSERT INTO users (id, email, name, password_hash, global_role, teams,"
        " created_at) VALUES (1, 'a@x.org', '', 'h', 'admin', '[]', 5)",
        "api_tokens": "INSERT INTO api_tokens (token_hash, user_id, name, created_at, kind,"
        " last_used_at) VALUES ('s', 1, 'session', 10, 'session', 10)",
        "enroll_secrets": "INSERT INTO enroll_secrets (secret, team_id, created_at)"
        " VALUES ('0123456789abcdef', 1, 1)",
        "labels": "INSERT INTO labels (id, name, description, query, platform, label_type,"
        " membership_type, created_at, updated_at) VALUES (1, 'l', '', '', '', 'regular',"
        " 'manual', 1, 1)",
        "label_membership": "INSERT INTO label_membership (label_id, host_id, updated_at)"
        " VALUES (1, 1, 1)",
    }
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0006"))
            for table, statement in rows.items():
                await conn.execute(text(statement))
                if table == "teams":  # hosts through Core, for its column defaults
                    await conn.execute(
                        insert(hosts).values(
                            id=1, node_key_hash="k", host_identifier="h", team_id=1,
                            enrolled_at=1, inventory={},
                        )
                    )  # fmt: skip
        await database.migrate()
        async with database.connect() as conn:
            for table in [*rows, "hosts"]:
                count = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
                assert count == 1, table
            host_team = (await conn.execute(text("SELECT team_id FROM hosts"))).scalar_one()
            assert host_team == 1
            if database.is_sqlite:
                keys_on = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
                assert keys_on == 1
                ddl = (
                    await conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'teams'"))
                ).scalar_one()
                assert "AUTOINCREMENT" in ddl
    finally:
        await database.dispose()


def _upgrade_to(revision: str) -> Callable[[Connection], None]:
    def run(sync_conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    return run


async def test_0009_moves_policy_webhooks_to_their_policy_tasks(database_url: str) -> None:
    """Each policy webhook becomes a subscription of its policy's standing task, keeping
    its cursor (no event lost or repeated by the move); the old table goes."""
    from fleetwatch.config import async_database_url
    from fleetwatch.policies.automations import task_name
    from fleetwatch.query.task_requests import system_link

    database = Database(async_database_url(database_url))
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0008"))
            await conn.execute(
                text(
                    "INSERT INTO policies (id, name, description, resolution, query, platform,"
                    " interval, team_id, created_at, updated_at)"
                    " VALUES (4, 'p', '', '', 'SELECT 1', '', 60, NULL, 1, 1)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO policy_webhooks (policy_id, url, last_seq, created_at)"
                    " VALUES (4, 'http://a.example/h', 17, 2.5)"
                )
            )
        await database.migrate()
        async with database.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT task_link, reference, replay_state, state, last_delivered_seq,"
                    " created_micros FROM query_task_subscriptions"
                )
            )
            assert [tuple(r) for r in rows] == [
                (
                    system_link(task_name(4)),
                    "http://a.example/h",
                    False,
                    "active",
                    17,
                    2_500_000,
                )
            ]
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            assert "policy_webhooks" not in tables
    finally:
        await database.dispose()
