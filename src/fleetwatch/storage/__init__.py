"""Storage: SQLAlchemy Core schema, Alembic migrations, SQLite and PostgreSQL engines. May
import `numeric_text` only; the `documents` and `changes` tables are read and written only
by index/ and query/."""

from fleetwatch.storage.database import Database
from fleetwatch.storage.schema import metadata

__all__ = ["Database", "metadata"]
