"""How long to wait before retrying an outbound call that failed `failures` times in a row.

The delay doubles with each failure up to a cap. The exponent is capped too: a destination
or a webhook that retries on for good can count thousands of failures, and `base * 2**n`
is then an integer too large for a float (OverflowError) long before anyone looks.
"""

from __future__ import annotations

import math

#: Doublings at most: 2**64 times any sane base is past any cap a setting can give.
MAX_DOUBLINGS = 64


def retry_delay(base: float, failures: int, cap: float) -> float:
    """Seconds to wait after `failures` consecutive failures: `base` after the first,
    doubling each time, never more than `cap` (nor less than 0)."""
    if failures <= 0 or base <= 0 or cap <= 0:
        return 0.0
    doublings = min(failures - 1, MAX_DOUBLINGS)
    return min(cap, math.ldexp(base, doublings))
