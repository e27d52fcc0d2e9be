"""Live query SQL validation: SQLite's verdict, one statement, read-only, positions."""

from __future__ import annotations

import pytest

from fleetwatch.live.sql_check import InvalidSql, check_live_sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM processes",
        "  select pid, name from processes where name = 'sshd';  ",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
        "SELECT * FROM users UNION SELECT * FROM groups",
        "SELECT p.pid FROM processes p JOIN listening_ports l USING (pid) WHERE l.port = 22",
        "SELECT count(*) FROM deb_packages GROUP BY arch HAVING count(*) > 1 -- comment",
        "select * from osquery_info\n",
    ],
)
def test_read_queries_pass(sql: str) -> None:
    assert check_live_sql(sql) == sql.strip()


@pytest.mark.parametrize(
    "sql, message, line, column",
    [
        ("", "empty", None, None),
        ("   \n ", "empty", None, None),
        ("-- only a comment", "empty", None, None),
        ("SELEC 1", 'near "SELEC": syntax error', 1, 1),
        ("SELECT *\nFROM processes WHER pid = 1", "syntax error", 2, None),
        ("SELECT 1 FROM (", "incomplete input", 1, None),
        ("SELECT 1; SELECT 2", "several statements (2)", None, None),
        ("DELETE FROM processes", "this is a DELETE statement", None, None),
        ("DROP TABLE users", "statement, not SELECT", None, None),
        ("ATTACH DATABASE '/tmp/x' AS x", "not SELECT", None, None),
        ("PRAGMA table_info(processes)", "not SELECT", None, None),
        ("INSERT INTO t VALUES (1)", "INSERT", None, None),
    ],
)
def test_bad_queries_name_the_problem(
    sql: str, message: str, line: int | None, column: int | None
) -> None:
    with pytest.raises(InvalidSql) as caught:
        check_live_sql(sql)
    assert message in str(caught.value)
    if line is not None:
        assert caught.value.line == line
    if column is not None:
        assert caught.value.column == column


def test_not_a_string_or_too_long() -> None:
    with pytest.raises(InvalidSql, match="string"):
        check_live_sql(5)
    with pytest.raises(InvalidSql, match="longer than"):
        check_live_sql("SELECT 1 " + " " * 100_001 + "-- x")
