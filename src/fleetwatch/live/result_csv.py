"""Campaign results as CSV records, safe to open in a spreadsheet.

Every cell may hold what an agent sent (hostnames, column names, row values), and a
spreadsheet runs a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return as a
formula. OWASP's advice, followed here: such a cell gets a leading `'`, which spreadsheets
show as text and do not keep. Every cell is also quoted: a spreadsheet that splits on `;`
or tab instead of `,` would otherwise start a new cell, formula and all, inside one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

#: The columns in front of every record: which host, and how it answered.
BASE_COLUMNS = ("host_id", "hostname", "status", "error")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def csv_writer(out: _Writable) -> Any:
    """A CSV writer for `csv_records`: every cell quoted, so no separator splits one."""
    return csv.writer(out, quoting=csv.QUOTE_ALL)


def safe_cell(value: object) -> object:
    """The value as a CSV cell that no spreadsheet evaluates; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def safe_record(values: Iterable[object]) -> list[object]:
    """A CSV record whose every cell went through `safe_cell`: every CSV the server or the
    CLI writes builds its records with this, so none forgets a cell."""
    return [safe_cell(v) for v in values]


def csv_records(results: Sequence[dict[str, Any]]) -> Iterator[list[object]]:
    """A header, then one record per row (one for a host with no rows): host columns first,
    then every result column in the order first seen."""
    columns = Columns()
    for result in results:
        columns.add(result)
    yield csv_header(columns.names)
    for result in results:
        yield from result_records(result, columns.names)


class Columns:
    """The result columns of a campaign in the order first seen (an export's header is
    collected in one pass over the results and written before the second)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._seen: set[str] = set()

    def add(self, result: dict[str, Any]) -> None:
        for key in result.get("columns") or [k for row in result["rows"] for k in row]:
            if key not in self._seen:
                self._seen.add(key)
                self.names.append(key)


def csv_header(columns: Sequence[str]) -> list[object]:
    """The header record: the host columns, then `columns`."""
    return safe_record((*BASE_COLUMNS, *columns))


def result_records(result: dict[str, Any], columns: Sequence[str]) -> Iterator[list[object]]:
    """One host's records: one per row, or one for a host with no rows."""
    base = [result["host_id"], result["hostname"], result["status"], result["error"] or ""]
    for row in result["rows"] or [{}]:
        yield safe_record(base + [row.get(c, "") for c in columns])
