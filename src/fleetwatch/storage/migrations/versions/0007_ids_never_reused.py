"""Ids of teams, users, hosts and labels are never handed out twice on SQLite.

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table plus one: delete
the newest team and the next team gets its id, and with it every document and log row that
still names that id (a team user of the new team would read the old team's logs). The
tables are rebuilt with AUTOINCREMENT (SQLite cannot add it in place); `Database.migrate`
turns foreign keys off around the migration, as SQLite's procedure for a rebuild asks, so
dropping the old tables cascades nowhere. PostgreSQL's sequences never reuse an id.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The tables whose ids other data refers to.
TABLES = ("teams", "users", "hosts", "labels")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
