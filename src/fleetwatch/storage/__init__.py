"""Storage: SQLAlchemy Core schema, Alembic migrations, SQLite and PostgreSQL engines."""

from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import metadata

__all__ = ["Database", "metadata"]
