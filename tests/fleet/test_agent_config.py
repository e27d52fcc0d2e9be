"""Validating the osquery config: every SQL in it is checked as live query SQL is."""

from __future__ import annotations

from typing import Any

import pytest

from fleetwatch.fleet.agent_config import DEFAULT_CONFIG, validate_config
from fleetwatch.fleet.errors import Invalid


def pack(sql: str) -> dict[str, Any]:
    return {"packs": {"ops": {"queries": {"users": {"query": sql, "interval": 60}}}}}


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {
                "schedule": {
                    "procs": {"query": "SELECT pid FROM processes", "interval": 60},
                    "bad": {"query": "SELECT pid\nFROM processes WHERE", "interval": 60},
                }
            },
            "schedule.bad.query: syntax error: incomplete input (line 2, column 20)",
        ),
        (
            {"schedule": {"procs": {"query": "SELEC pid FROM processes", "interval": 60}}},
            'schedule.procs.query: syntax error: near "SELEC": syntax error (line 1, column 1)',
        ),
        (pack("DELETE FROM users"), "packs.ops.queries.users.query: only read queries can run"),
        (pack("SELECT 1; SELECT 2"), "packs.ops.queries.users.query: several statements (2)"),
        (
            {"packs": {"ops": {"queries": {}, "discovery": ["SELECT 1", "SELECT FROM"]}}},
            'packs.ops.discovery[1]: syntax error: near "FROM": syntax error (line 1, column 8)',
        ),
        (
            {"decorators": {"always": ["SELECT uuid FROM system_info", "UPDATE x SET y = 1"]}},
            "decorators.always[1]: only read queries can run",
        ),
        (
            {"decorators": {"interval": {"3600": ["SELECT (1"]}}},
            "decorators.interval.3600[0]: syntax error",
        ),
    ],
)
def test_config_sql_is_checked_as_live_query_sql(config: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as refused:
        validate_config(config)
    assert str(refused.value).startswith(message), str(refused.value)


def test_read_queries_and_the_default_config_pass() -> None:
    validate_config(DEFAULT_CONFIG)
    validate_config(pack("WITH t AS (SELECT 1 AS n) SELECT n FROM t;"))
    validate_config({"schedule": {"q": {"query": "SELECT * FROM no_such_table", "interval": 1}}})
