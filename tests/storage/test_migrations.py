"""Migrations: one linear history, and the schema they build matches the Core tables."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from fleetwatch.storage import Database, metadata
from fleetwatch.storage.database import alembic_config


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
