"""SQL functions fleetwatch adds to every SQLite connection (SQLite has no regular expressions).

- `fleetwatch_words(text)`: `text` with ASCII letters lowercased and every run of ASCII
  non-word characters made one space (`ascii_words`); NULL for anything but text. PHRASE
  terms compare text this way (`fleetwatch.query.phrase.phrase_haystack`); in one pass here,
  where SQL alone needed a recursive query whose cost grew with the square of the length.
"""

from __future__ import annotations

import re
from typing import Any

#: ASCII characters that are not word characters ([A-Za-z0-9_]) separate words; every other
#: character, including any non-ASCII one, is part of a word. Only ASCII letters fold case.
#: This is a definition SQLite and PostgreSQL can both compute.
WORD_SEPARATORS = "".join(
    chr(c) for c in range(1, 128) if not (chr(c).isascii() and (chr(c).isalnum() or c == 95))
)
_SEPARATOR_RUN = re.compile("[" + re.escape(WORD_SEPARATORS) + "]+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_words(text: str) -> str:
    """`text` ASCII-lowercased, each run of separators replaced by one space."""
    return _SEPARATOR_RUN.sub(" ", text.translate(_ASCII_LOWER))


def _words(value: Any) -> str | None:
    # SQL hands over whatever the argument is; only text has words.
    return ascii_words(value) if isinstance(value, str) else None


def register(dbapi_conn: Any) -> None:
    """Add the functions to a new connection (sqlite3, or SQLAlchemy's aiosqlite adapter)."""
    dbapi_conn.create_function("fleetwatch_words", 1, _words, deterministic=True)


__all__ = ["WORD_SEPARATORS", "ascii_words", "register"]
