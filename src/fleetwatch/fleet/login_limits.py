"""Login rate limiting: a token bucket per (email, client address), like Fleet's 10/min."""

from __future__ import annotations

import time
from dataclasses import dataclass

#: Attempts allowed in a burst, and how many come back per minute.
BURST = 10
PER_MINUTE = 10.0
_MAX_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class LoginLimiter:
    """Answers whether one more login attempt is allowed, and when the next one will be."""

    def __init__(self, burst: int = BURST, per_minute: float = PER_MINUTE) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def attempt(self, email: str, address: str, now: float | None = None) -> float:
        """0 when the attempt may go ahead (and is counted), else seconds to wait."""
        now = time.monotonic() if now is None else now
        key = (email.strip().lower(), address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._buckets.clear()  # bounded memory under a spray of addresses
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def succeeded(self, email: str, address: str) -> None:
        """A good login refills the bucket: the limit is for guessing, not for using."""
        self._buckets.pop((email.strip().lower(), address), None)
