"""Numeric-looking strings: the one definition that range queries, SQLite and PostgreSQL share.

osquery reports every column as a string (`"cpu": "93.5"`), so a numeric range (LONG, DOUBLE,
DATE) also compares a string that looks like a number, as that number. A string is
numeric-looking when it is, in full (no spaces around it, ASCII only):

    an optional sign (+ or -), 1 to 20 digits, optionally a point and 1 to 20 digits,
    optionally e or E, an optional sign and 1 or 2 digits

so "90", "-3", "+7", "0012" (12), "93.50", "1.5e-07" and "18446744073709551615" are numbers,
and " 90", "90 ", "1.", ".5", "0x1f", "1e100", "1,000", "inf", "NaN" and "12abc" are not.
Its value is the nearest double (correctly rounded, as Python's float()). The bounds keep
that value finite and, unless the text spells 0, away from 0 (its magnitude is below 10^120
and at least 10^-119), so no backend overflows or underflows converting it (PostgreSQL
would fail the query); they still cover what osquery prints (64-bit integers, doubles).

Where it is computed: `fleetwatch.query.matcher` calls `numeric_value`; SQLite calls the
same function, registered on every connection as `fleetwatch_number` (storage); PostgreSQL
checks `PG_PATTERN` with `~` and then casts to double precision (strtod, correctly rounded).
"""

from __future__ import annotations

import re

#: The grammar above as a regular expression (Python and PostgreSQL read it alike).
PATTERN = r"[+-]?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,2})?"
#: PATTERN anchored for PostgreSQL's `~` (which searches).
PG_PATTERN = f"^{PATTERN}$"
#: The SQLite function that `fleetwatch.storage` registers (see `numeric_value`).
SQLITE_FUNCTION = "fleetwatch_number"

_NUMERIC = re.compile(PATTERN)


def numeric_value(text: object) -> float | None:
    """The value of a numeric-looking string, or None for anything else."""
    if not isinstance(text, str) or _NUMERIC.fullmatch(text) is None:
        return None
    return float(text)
