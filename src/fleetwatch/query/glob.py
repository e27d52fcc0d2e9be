"""WILDCARD patterns matched without backtracking.

A pattern is split at its `*`s into segments of literal characters and `?`s, each of a fixed
length. The first segment must match at the start of the value, the last at its end, and
the others in order in between; placing each middle segment at its leftmost occurrence
after the previous one is always right (it leaves the most room for the rest), so a match
never revisits a position: the segments search consecutive, disjoint windows of the value.
A search for a literal segment is `str.find`; a segment with `?` is a regular expression of
literals and `.` with no quantifier, so it cannot backtrack either. The work is at most the
value's length times the longest segment's, whatever the number of `*` (a regular
expression `.*a.*a...` instead costs a power of the length: issue 14).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Segment:
    """A part of a pattern between two `*`: literal characters and `?` (any one character)."""

    text: str
    #: The segment as a quantifier-free regular expression, when it has a `?`.
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str) -> Segment:
        if "?" not in text:
            return cls(text, None)
        body = "".join("." if ch == "?" else re.escape(ch) for ch in text)
        return cls(text, re.compile(body, re.DOTALL))

    def __len__(self) -> int:
        return len(self.text)

    def at(self, value: str, i: int) -> bool:
        """Whether the segment matches `value` at index `i` exactly."""
        if self.regex is None:
            return value.startswith(self.text, i)
        return self.regex.match(value, i, i + len(self.text)) is not None

    def find(self, value: str, start: int, end: int) -> int:
        """The leftmost index in `value[start:end]` where the segment matches, or -1."""
        if self.regex is None:
            return value.find(self.text, start, end)
        found = self.regex.search(value, start, end)
        return -1 if found is None else found.start()


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled WILDCARD pattern: `*` any run, `?` one character, all else literal."""

    pattern: str
    #: Whether the pattern has a `*` at all (without one it must match the whole value).
    has_star: bool
    first: Segment
    middle: tuple[Segment, ...]
    last: Segment

    @classmethod
    def compile(cls, pattern: str) -> Glob:
        """Split `pattern` at its `*`s (runs of `*` act as one)."""
        parts = pattern.split("*")
        first, last = Segment.compile(parts[0]), Segment.compile(parts[-1])
        middle = tuple(Segment.compile(p) for p in parts[1:-1] if p)
        return cls(pattern, len(parts) > 1, first, middle, last)

    def matches(self, value: str) -> bool:
        """Whether the whole of `value` matches the pattern."""
        n = len(value)
        head, tail = len(self.first), len(self.last)
        if not self.has_star:
            return n == head and self.first.at(value, 0)
        if n < head + tail or not self.first.at(value, 0) or not self.last.at(value, n - tail):
            return False
        pos, end = head, n - tail
        for segment in self.middle:
            found = segment.find(value, pos, end)
            if found < 0:
                return False
            pos = found + len(segment)
        return True


__all__ = ["Glob", "Segment"]
