"""Token kinds and last use, so login sessions expire when idle.

Existing tokens named "session" came from logging in and become idle-expiring sessions;
the rest are API tokens. Their last use is unknown, so it starts at their creation: a
session older than the idle timeout has to log in again once after the upgrade.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="api"))
        batch.add_column(sa.Column("last_used_at", sa.Float(), nullable=True))
    op.execute("UPDATE api_tokens SET kind = 'session' WHERE name = 'session'")
    op.execute("UPDATE api_tokens SET last_used_at = created_at")
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("last_used_at", existing_type=sa.Float(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("kind")
