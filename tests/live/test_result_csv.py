"""CSV records of campaign results: column order, one record per row, formula cells defused."""

from __future__ import annotations

import io
from typing import Any

import pytest

from fleetwatch.live.result_csv import csv_records, csv_writer, safe_cell, safe_record


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_cells_that_a_spreadsheet_would_evaluate_get_a_quote(start: str) -> None:
    assert safe_cell(start + "cmd|' /C calc'!A0") == "'" + start + "cmd|' /C calc'!A0"


@pytest.mark.parametrize("value", ["", "calc", "a=b", " =1", "'=1", 5, -3, None])
def test_other_cells_are_unchanged(value: object) -> None:
    assert safe_cell(value) == value


def result(host_id: int, hostname: str, rows: list[dict[str, str]], **kw: Any) -> dict[str, Any]:
    return (
        {"host_id": host_id, "hostname": hostname, "status": "complete", "error": None}
        | {"rows": rows}
        | kw
    )


def test_records_host_columns_first_then_columns_as_first_seen() -> None:
    results = [
        result(1, "a", [{"x": "1", "y": "2"}]),
        result(2, "=b", [], status="error", error="-boom"),
        result(3, "c", [{"z": "@z", "x": "3"}]),
    ]
    assert list(csv_records(results)) == [
        ["host_id", "hostname", "status", "error", "x", "y", "z"],
        [1, "a", "complete", "", "1", "2", ""],
        [2, "'=b", "error", "'-boom", "", "", ""],
        [3, "c", "complete", "", "3", "", "'@z"],
    ]


def test_declared_column_order_wins_and_column_names_are_defused() -> None:
    results = [result(1, "a", [{"b": "1", "=a": "2"}], columns=["=a", "b"])]
    assert list(csv_records(results))[0][4:] == ["'=a", "b"]


def test_every_cell_is_quoted_so_no_other_separator_splits_one() -> None:
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerows(csv_records([result(7, "h", [{"c": "x;=cmd|' /C calc'!A0"}])]))
    assert buffer.getvalue().splitlines() == [
        '"host_id","hostname","status","error","c"',
        '"7","h","complete","","x;=cmd|\' /C calc\'!A0"',
    ]


def test_safe_record_defuses_every_cell_and_keeps_numbers() -> None:
    """The one function every CSV writer (API export, `fleetwatch query` and its --diff)
    builds records with."""
    assert safe_record((7, "=cmd", "added", "{}", "-1", None)) == [
        7,
        "'=cmd",
        "added",
        "{}",
        "'-1",
        None,
    ]
