"""The tables, in SQLAlchemy Core. Alembic migrations in `migrations/` create them.

JSON columns are JSONB on PostgreSQL and JSON text on SQLite, so the query translation can
use `json_extract` / `->>` on either.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

#: JSON documents: JSONB on PostgreSQL (indexable, `->>`), JSON text on SQLite.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")
#: A 64-bit integer primary key that auto-increments on both backends (SQLite needs INTEGER).
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

# --- the document index and its ordered change log -------------------------------------

documents = Table(
    "documents",
    metadata,
    Column("self_link", String(1024), primary_key=True),
    Column("kind", String(255), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("update_time_micros", BigInteger, nullable=False),
    Column("update_action", String(16), nullable=False),
    Column("expiration_micros", BigInteger, nullable=True),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", JsonDoc, nullable=False),
    Index("ix_documents_kind", "kind"),
    Index("ix_documents_expiration", "expiration_micros"),
)

changes = Table(
    "changes",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("self_link", String(1024), nullable=False),
    Column("kind", String(255), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("action", String(16), nullable=False),
    Column("time_micros", BigInteger, nullable=False),
    Column("body", JsonDoc, nullable=False),
    Column("prev_body", JsonDoc, nullable=True),
    Index("ix_changes_time", "time_micros"),
)

# --- fleet state --------------------------------------------------------------------------

teams = Table(
    "teams",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("config", JsonDoc, nullable=True),
    Column("created_at", Float, nullable=False),
    sqlite_autoincrement=True,  # ids never reused (migration 0007)
)

enroll_secrets = Table(
    "enroll_secrets",
    metadata,
    Column("secret", String(255), primary_key=True),
    Column("team_id", BigId, ForeignKey("teams.id", ondelete="CASCADE"), nullable=True),
    Column("created_at", Float, nullable=False),
)

hosts = Table(
    "hosts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("node_key_hash", String(64), nullable=False, unique=True),
    Column("host_identifier", String(255), nullable=False),
    Column("uuid", String(255), nullable=False, default=""),
    Column("hostname", String(255), nullable=False, default=""),
    Column("computer_name", String(255), nullable=False, default=""),
    Column("platform", String(64), nullable=False, default=""),
    Column("platform_like", String(64), nullable=False, default=""),
    Column("os_name", String(255), nullable=False, default=""),
    Column("os_version", String(255), nullable=False, default=""),
    Column("osquery_version", String(64), nullable=False, default=""),
    Column("cpu_type", String(64), nullable=False, default=""),
    Column("cpu_brand", String(255), nullable=False, default=""),
    Column("cpu_logical_cores", Integer, nullable=False, default=0),
    Column("physical_memory", BigInteger, nullable=False, default=0),
    Column("hardware_vendor", String(255), nullable=False, default=""),
    Column("hardware_model", String(255), nullable=False, default=""),
    Column("hardware_serial", String(255), nullable=False, default=""),
    Column("team_id", BigId, ForeignKey("teams.id", ondelete="SET NULL"), nullable=True),
    Column("enrolled_at", Float, nullable=False),
    Column("seen_time", Float, nullable=True),
    Column("detail_updated_at", Float, nullable=True),
    Column("label_updated_at", Float, nullable=True),
    Column("distributed_interval", Integer, nullable=False, default=0),
    Column("config_tls_refresh", Integer, nullable=False, default=0),
    Column("inventory", JsonDoc, nullable=False),
    Index("ix_hosts_host_identifier", "host_identifier"),
    Index("ix_hosts_uuid", "uuid"),
    sqlite_autoincrement=True,  # ids never reused (migration 0007)
)

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("email", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False, default=""),
    Column("password_hash", String(255), nullable=False),
    Column("global_role", String(32), nullable=True),
    Column("teams", JsonDoc, nullable=False),
    Column("created_at", Float, nullable=False),
    sqlite_autoincrement=True,  # ids never reused (migration 0007)
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False, default="session"),
    # "session" (from logging in: expires when idle) or "api" (named, lasts until revoked).
    Column("kind", String(16), nullable=False, default="session"),
    Column("created_at", Float, nullable=False),
    # Written at most once a minute per token (see fleet/users.py), for idle expiry.
    Column("last_used_at", Float, nullable=False),
)

app_settings = Table(
    "app_settings",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("value", JsonDoc, nullable=False),
)

# --- continuous query tasks (migration 0002) ----------------------------------------------

query_tasks = Table(
    "query_tasks",
    metadata,
    Column("self_link", String(1024), primary_key=True),
    Column("factory", String(64), nullable=False),
    Column("continuous", Boolean, nullable=False),
    Column("stage", String(16), nullable=False),
    Column("expiration_micros", BigInteger, nullable=True),
    Column("created_micros", BigInteger, nullable=False),
    Column("snapshot_seq", BigInteger, nullable=False),
    Column("owner_id", BigInteger, nullable=True),
    #: The task as GET shows it (querySpec, taskInfo, results, counters).
    Column("body", JsonDoc, nullable=False),
    Index("ix_query_tasks_expiration", "expiration_micros"),
)

query_task_subscriptions = Table(
    "query_task_subscriptions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_link", String(1024), nullable=False),
    Column("reference", String(2048), nullable=False),
    Column("replay_state", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    #: The last sequence delivered; None while a replayState subscriber's initial state is due.
    Column("last_delivered_seq", BigInteger, nullable=True),
    Column("delivered_count", BigInteger, nullable=False),
    Column("failure_count", Integer, nullable=False),
    Column("failure_reason", Text, nullable=True),
    Column("created_micros", BigInteger, nullable=False),
    Column("updated_micros", BigInteger, nullable=False),
    Index("ix_query_task_subscriptions_task", "task_link"),
)

#: Result pages of tasks with a resultLimit (migration 0005): any node serves any page.
query_page_sets = Table(
    "query_page_sets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("task_link", String(1024), nullable=False),
    #: The matching links read in the task's snapshot, in result order.
    Column("links", JsonDoc, nullable=False),
    Column("page_size", Integer, nullable=False),
    Column("expand", Boolean, nullable=False),
    Column("forward_only", Boolean, nullable=False),
    Column("expiration_micros", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("owner_id", BigInteger, nullable=True),
    Index("ix_query_page_sets_task", "task_link"),
    Index("ix_query_page_sets_expiration", "expiration_micros"),
)

#: How far each change-log reader (e.g. the standing tasks' counters) has processed.
stream_checkpoints = Table(
    "stream_checkpoints",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

# --- labels (migration 0004) ------------------------------------------------------------

labels = Table(
    "labels",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    #: The SQL of a dynamic label ("" for a manual one).
    Column("query", Text, nullable=False, default=""),
    #: Only hosts of this platform run the query ("" for all).
    Column("platform", String(64), nullable=False, default=""),
    #: `builtin` or `regular`.
    Column("label_type", String(16), nullable=False, default="regular"),
    #: `dynamic` (membership from the query) or `manual` (an explicit host list).
    Column("membership_type", String(16), nullable=False, default="dynamic"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    sqlite_autoincrement=True,  # ids never reused (migration 0007)
)

label_membership = Table(
    "label_membership",
    metadata,
    Column("label_id", BigId, ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True),
    Column("host_id", BigId, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
    Column("updated_at", Float, nullable=False),
    Index("ix_label_membership_host", "host_id"),
)

# --- policies (migration 0008) ------------------------------------------------------------

policies = Table(
    "policies",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("resolution", Text, nullable=False, default=""),
    Column("query", Text, nullable=False),
    #: Comma-separated platform families that run it ("" for all).
    Column("platform", String(64), nullable=False, default=""),
    #: Seconds between a host's runs.
    Column("interval", Integer, nullable=False),
    #: The team whose hosts run it (NULL: a global policy, every host).
    Column("team_id", BigId, ForeignKey("teams.id", ondelete="CASCADE"), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_policies_team", "team_id"),
    sqlite_autoincrement=True,  # ids never reused: result documents name them
)
