"""WILDCARD patterns: the semantics, and work bounded by the value's length (issue 14)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.query.glob import Glob, Segment
from fleetwatch.query.spec import MAX_MATCHED_LENGTH

ATTACK = "*a*a*a*a*a*a*a*a*a*a*a*a*b"


def reference(pattern: str, value: str) -> bool:
    """The backtracking translation (fine on tiny inputs, exponential on hostile ones)."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(body, value, re.DOTALL) is not None


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("**", "abc", True),
        ("?", "", False),
        ("?", "é", True),
        ("a*", "a", True),
        ("*a", "ba", True),
        ("a*a", "a", False),  # the first and last segment cannot share a character
        ("a*a", "aa", True),
        ("*/t?st", "/a/test", True),
        ("*/t?st", "/a/tst", False),
        ("*[t]est", "/[t]est", True),
        ("*[t]est", "/test", False),
        ("50%_off*", "50%_off [x]", True),
        ("50%_off*", "50xyoff", False),
        ("a\\*", "a\\xyz", True),  # a backslash is literal, the `*` still a wildcard
        ("multi*line", "multi\nline", True),
        ("*ab*ab*", "xabyab", True),
        ("*ab*ab*", "xab", False),
        ("*aa*a", "aaa", True),
        (ATTACK, "a" * 14, False),
        (ATTACK, "a" * 12 + "b", True),
        (ATTACK, "a" * 11 + "b", False),
    ],
)
def test_semantics(pattern: str, value: str, expected: bool) -> None:
    assert Glob.compile(pattern).matches(value) is expected
    assert reference(pattern, value) is expected


def test_the_attack_on_a_long_value() -> None:
    """A backtracking matcher takes longer than the age of the universe on this one."""
    glob = Glob.compile(ATTACK)
    assert not glob.matches("a" * 64)
    assert glob.matches("a" * 63 + "b")


@given(
    pattern=st.text(alphabet="ab*?[]%_\\", max_size=10),
    value=st.text(alphabet="ab[]%_\\*?\n", max_size=12),
)
def test_agrees_with_the_backtracking_translation(pattern: str, value: str) -> None:
    assert Glob.compile(pattern).matches(value) is reference(pattern, value)


class _Counted:
    """Records every search the matcher makes: (segment, start, end)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.finds: list[tuple[str, int, int]] = []
        self.ats = 0
        find, at = Segment.find, Segment.at

        def counted_find(segment: Segment, value: str, start: int, end: int) -> int:
            self.finds.append((segment.text, start, end))
            return find(segment, value, start, end)

        def counted_at(segment: Segment, value: str, i: int) -> bool:
            self.ats += 1
            return at(segment, value, i)

        monkeypatch.setattr(Segment, "find", counted_find)
        monkeypatch.setattr(Segment, "at", counted_at)


N = MAX_MATCHED_LENGTH


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        (ATTACK, "a" * N, False),
        (ATTACK, "a" * (N - 1) + "b", True),
        ("*a*a*a*a*a*a*a*a*a*a*a*a*c*", "a" * N, False),  # fails in the middle
        ("*a?*a?*a?*a?*a?*a?*a?*a?*c?*", "a" * N, False),
        ("?*a*a*a*a*a*a*a*a*a*a*a*ac*?", "a" * (N - 1) + "c", False),
        ("*" + "a" * 100 + "b*", "a" * N, False),
    ],
)
def test_hostile_patterns_search_each_position_once(
    monkeypatch: pytest.MonkeyPatch, pattern: str, value: str, expected: bool
) -> None:
    """No backtracking: one search per segment, each starting where the previous match ended."""
    counted = _Counted(monkeypatch)
    glob = Glob.compile(pattern)
    assert glob.matches(value) is expected
    assert counted.ats <= 2  # the anchored first and last segment, once each
    assert len(counted.finds) <= len(glob.middle)
    starts = [start for _, start, _ in counted.finds]
    assert starts == sorted(starts)  # the windows only move forward
    assert all(end <= len(value) for _, _, end in counted.finds)


def test_work_does_not_grow_with_the_number_of_stars(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = _Counted(monkeypatch)
    value = "a" * 1000
    for stars in range(1, 16):
        counted.finds.clear()
        Glob.compile("*a" * stars + "*b").matches(value)
        assert len(counted.finds) <= stars  # never a search per (star, position) pair
