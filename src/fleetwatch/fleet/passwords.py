"""The password policy: long enough, and not one of the passwords people use most.

The common passwords are zxcvbn's list (30,000 entries ranked from leaked password sets),
read from the package rather than copied here so an upgrade brings its updates. The policy
applies when a password is set (user creation, password change, the first admin from the
settings); existing users whose passwords predate it can still log in.
"""

from __future__ import annotations

from functools import cache

from fleetwatch.fleet.errors import Invalid

#: Fewer characters than this are refused (NIST SP 800-63B asks for at least 8; we ask 12).
MIN_PASSWORD = 12


@cache
def common_passwords() -> frozenset[str]:
    """zxcvbn's common-passwords list, lower-cased (loaded once, on first use)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def check_password(password: str, field: str = "password") -> None:
    """Invalid, naming the rule that failed, unless `password` may be set."""
    if len(password) < MIN_PASSWORD:
        raise Invalid(
            f"{field} must be at least {MIN_PASSWORD} characters (got {len(password)}); "
            "a passphrase of a few words is easy to remember"
        )
    if password.lower() in common_passwords():
        raise Invalid(
            f"{field} is on the list of commonly used passwords (case aside), which attackers "
            "try first; choose another"
        )
