"""Result page sets of query tasks, so any node can serve a page another node cut.

Revision ID: 0005
Revises: 0004
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "query_page_sets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("task_link", sa.String(length=1024), nullable=False),
        sa.Column("links", _json(), nullable=False),
        sa.Column("page_size", sa.Integer(), nullable=False),
        sa.Column("expand", sa.Boolean(), nullable=False),
        sa.Column("forward_only", sa.Boolean(), nullable=False),
        sa.Column("expiration_micros", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_query_page_sets_task", "query_page_sets", ["task_link"])
    op.create_index("ix_query_page_sets_expiration", "query_page_sets", ["expiration_micros"])


def downgrade() -> None:
    op.drop_table("query_page_sets")
