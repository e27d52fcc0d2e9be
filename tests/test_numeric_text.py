"""Numeric-looking strings: the grammar, the values, and the bounds that keep them finite."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.numeric_text import PATTERN, numeric_value


def test_numeric_looking_strings_and_their_values() -> None:
    assert numeric_value("90") == 90.0 and numeric_value("-3") == -3.0
    assert numeric_value("+7") == 7.0 and numeric_value("0012") == 12.0
    assert numeric_value("93.50") == 93.5 and numeric_value("1.5e-07") == 1.5e-07
    assert numeric_value("18446744073709551615") == float(2**64 - 1)
    assert numeric_value("9" * 20 + "." + "9" * 20 + "e99") == 1e119
    for text in (" 90", "90 ", "1.", ".5", "0x1f", "1e100", "1,000", "inf", "NaN", "12abc", ""):
        assert numeric_value(text) is None, text
    assert numeric_value("9" * 21) is None and numeric_value("1." + "0" * 21) is None
    assert numeric_value("٣") is None and numeric_value("90\n") is None
    assert numeric_value(90) is None and numeric_value(None) is None


@given(st.from_regex(PATTERN, fullmatch=True))
def test_every_numeric_looking_string_is_a_finite_double_zero_only_when_written_so(
    text: str,
) -> None:
    value = numeric_value(text)
    assert value is not None and abs(value) < 1e120
    digits = re.sub(r"[eE].*", "", text)
    assert (value == 0) == (digits.strip("+-0.") == "")
