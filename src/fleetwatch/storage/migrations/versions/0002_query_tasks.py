"""Continuous query tasks, their webhook subscriptions and change-log checkpoints.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "query_tasks",
        sa.Column("self_link", sa.String(length=1024), nullable=False),
        sa.Column("factory", sa.String(length=64), nullable=False),
        sa.Column("continuous", sa.Boolean(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("expiration_micros", sa.BigInteger(), nullable=True),
        sa.Column("created_micros", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_seq", sa.BigInteger(), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column("body", _json(), nullable=False),
        sa.PrimaryKeyConstraint("self_link"),
    )
    op.create_index("ix_query_tasks_expiration", "query_tasks", ["expiration_micros"])
    op.create_table(
        "query_task_subscriptions",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("task_link", sa.String(length=1024), nullable=False),
        sa.Column("reference", sa.String(length=2048), nullable=False),
        sa.Column("replay_state", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_delivered_seq", sa.BigInteger(), nullable=True),
        sa.Column("delivered_count", sa.BigInteger(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_query_task_subscriptions_task", "query_task_subscriptions", ["task_link"])
    op.create_table(
        "stream_checkpoints",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("stream_checkpoints")
    op.drop_index("ix_query_task_subscriptions_task", table_name="query_task_subscriptions")
    op.drop_table("query_task_subscriptions")
    op.drop_index("ix_query_tasks_expiration", table_name="query_tasks")
    op.drop_table("query_tasks")
