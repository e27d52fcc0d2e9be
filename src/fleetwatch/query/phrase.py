"""PHRASE words, shared by the matcher, the SQL translation and the validation of a
PHRASE term in `fleetwatch.query.spec`."""

from __future__ import annotations

from fleetwatch.storage.sqlite_functions import WORD_SEPARATORS, ascii_words

#: Characters that separate PHRASE words: every ASCII character but letters, digits and `_`.
PHRASE_SEPARATORS = WORD_SEPARATORS


def phrase_words(text: str) -> list[str]:
    """The words of `text`, ASCII-lowercased, in order."""
    return [w for w in ascii_words(text).split(" ") if w]


def phrase_haystack(text: str) -> str:
    """`text` normalised for PHRASE: lowercased words separated and surrounded by one space."""
    return " " + ascii_words(text) + " "


def phrase_needle(phrase: str) -> str:
    """The substring a PHRASE term looks for in `phrase_haystack(value)`."""
    return " " + " ".join(phrase_words(phrase)) + " "
