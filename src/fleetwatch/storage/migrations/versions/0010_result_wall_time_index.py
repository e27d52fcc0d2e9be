"""Campaign results ordered by wall time are read through an index, not sorted per page.

Two partial expression indexes over the `fleet:result` documents: (campaign, no wall time,
wall time, link), ascending and with the wall time descending, the order of
`GET /campaigns/{id}/results?order_key=wall_time_ms` (answers without one last, ties by
link). Without them every page sorted all of the campaign's results (about 20 µs each on
SQLite). The expressions are written out as `fleetwatch.query.keyset.IndexedOrder` renders
them (`RESULT_WALL_TIME` in fleetwatch.live.result_pages); a database uses an expression
index only for the identical expression, and tests/live/test_result_pages.py checks the
plans.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_SQLITE_VALUE = "json_extract(body, '$.stats.wall_time_ms')"
_PG_VALUE = (
    "(CASE WHEN jsonb_typeof(body -> 'stats' -> 'wall_time_ms') = 'number' "
    "THEN (body -> 'stats' ->> 'wall_time_ms')::double precision END)"
)
_WHERE = "kind = 'fleet:result'"


def _columns(dialect: str, descending: bool) -> str:
    direction = " DESC" if descending else ""
    if dialect == "postgresql":
        group, value = "((body ->> 'campaign_id'))", f"({_PG_VALUE})"
    else:
        group, value = "json_extract(body, '$.campaign_id')", _SQLITE_VALUE
    return f"{group}, ({value} IS NULL), {value}{direction}, self_link"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, descending in (("asc", False), ("desc", True)):
        op.execute(
            f"CREATE INDEX ix_documents_result_wall_time_{name} ON documents "
            f"({_columns(dialect, descending)}) WHERE {_WHERE}"
        )


def downgrade() -> None:
    for name in ("asc", "desc"):
        op.execute(f"DROP INDEX ix_documents_result_wall_time_{name}")
