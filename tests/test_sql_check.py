"""Live query SQL validation: SQLite's verdict, one statement, read-only, positions."""

from __future__ import annotations

import threading

import pytest

from fleetwatch import sql_check
from fleetwatch.sql_check import InvalidSql, check_live_sql


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


@pytest.mark.parametrize(
    "sql",
    [
        # Deeper than SQLite's parser stack: osquery itself would refuse these.
        "SELECT " + "(" * 500 + "1" + ")" * 500,
        "SELECT " + "NOT " * 3000 + "1",
        "SELECT " + "CASE WHEN 1 THEN " * 200 + "1" + " END" * 200,
    ],
)
def test_nesting_too_deep_for_sqlite_is_named(sql: str) -> None:
    with pytest.raises(InvalidSql, match="too deeply .parser stack overflow"):
        check_live_sql(sql)


def test_nesting_sqlite_accepts_but_too_deep_to_check_is_named() -> None:
    # 60 levels parse in SQLite but exhaust sqlglot's recursion (about 20 frames a level).
    sql = "SELECT " + "(" * 60 + "1" + ")" * 60
    with pytest.raises(InvalidSql, match="too deeply to check"):
        check_live_sql(sql)


def test_moderate_nesting_still_passes() -> None:
    sql = "SELECT " + "(" * 20 + "1" + ")" * 20 + " FROM processes"
    assert check_live_sql(sql) == sql


async def test_checks_run_on_the_checker_threads_not_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[str] = []
    real = sql_check.check_live_sql

    def recording(sql: object) -> str:
        threads.append(threading.current_thread().name)
        return real(sql)

    monkeypatch.setattr(sql_check, "check_live_sql", recording)
    assert await sql_check.check_live_sql_off_loop(" SELECT 1 ") == "SELECT 1"
    with pytest.raises(InvalidSql, match="only read queries"):
        await sql_check.check_live_sql_off_loop("DELETE FROM processes")
    assert len(threads) == 2
    assert all(name.startswith("fleetwatch-sql-check") for name in threads)
    assert threading.current_thread().name not in threads
