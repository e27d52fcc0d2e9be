"""The password policy: 12 characters at least, and not a common password (case aside)."""

from __future__ import annotations

import pytest

from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.passwords import MIN_PASSWORD, check_password, common_passwords


@pytest.mark.parametrize("weak", ["aaaaaaaa", "password", "x" * (MIN_PASSWORD - 1)])
def test_short_passwords_are_refused_saying_so(weak: str) -> None:
    with pytest.raises(Invalid, match="at least 12 characters"):
        check_password(weak)


@pytest.mark.parametrize("common", ["qwerty123456", "LeaveMeAlone", "1QAZ2WSX3EDC"])
def test_common_passwords_are_refused_case_aside(common: str) -> None:
    with pytest.raises(Invalid, match="commonly used passwords"):
        check_password(common)


def test_a_long_uncommon_password_is_accepted_and_the_list_is_the_maintained_one() -> None:
    check_password("correct horse battery staple")
    check_password("aaaaaaaaaaaa")  # long enough and not on the list: length is the rule
    assert len(common_passwords()) > 20_000 and "password" in common_passwords()


def test_the_message_names_the_field() -> None:
    with pytest.raises(Invalid, match="^admin_password must be at least 12"):
        check_password("short", "admin_password")
