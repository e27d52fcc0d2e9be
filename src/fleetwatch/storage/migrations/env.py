"""Alembic environment: always handed a live connection by `Database.migrate`."""

from alembic import context

from fleetwatch.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline mode is not supported
    raise RuntimeError("fleetwatch migrations run through Database.migrate()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
