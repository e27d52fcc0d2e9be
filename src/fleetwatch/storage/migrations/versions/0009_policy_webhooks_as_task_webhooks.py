"""Policy webhooks become webhook subscriptions of each policy's standing query task.

Each `policy_webhooks` row moves to `query_task_subscriptions` under the link of its
policy's task (`/core/system-query-tasks/policy-failing-{id}`, started by the server),
keeping its cursor, so no event is lost or repeated by the move; the table goes.

Revision ID: 0009
Revises: 0008
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TASK_LINK = "/core/system-query-tasks/policy-failing-"


def _big_id() -> sa.types.TypeEngine[Any]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT policy_id, url, last_seq, created_at FROM policy_webhooks ORDER BY id")
    ).all()
    subscriptions = sa.table(
        "query_task_subscriptions",
        sa.column("task_link", sa.String),
        sa.column("reference", sa.String),
        sa.column("replay_state", sa.Boolean),
        sa.column("state", sa.String),
        sa.column("last_delivered_seq", sa.BigInteger),
        sa.column("delivered_count", sa.BigInteger),
        sa.column("failure_count", sa.Integer),
        sa.column("failure_reason", sa.Text),
        sa.column("created_micros", sa.BigInteger),
        sa.column("updated_micros", sa.BigInteger),
    )
    if rows:
        op.bulk_insert(
            subscriptions,
            [
                {
                    "task_link": f"{TASK_LINK}{row.policy_id}",
                    "reference": row.url,
                    "replay_state": False,
                    "state": "active",
                    "last_delivered_seq": row.last_seq,
                    "delivered_count": 0,
                    "failure_count": 0,
                    "failure_reason": None,
                    "created_micros": int(row.created_at * 1_000_000),
                    "updated_micros": int(row.created_at * 1_000_000),
                }
                for row in rows
            ],
        )
    op.drop_index("ix_policy_webhooks_policy", table_name="policy_webhooks")
    op.drop_table("policy_webhooks")


def downgrade() -> None:
    op.create_table(
        "policy_webhooks",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("policy_id", _big_id(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_policy_webhooks_policy", "policy_webhooks", ["policy_id"])
