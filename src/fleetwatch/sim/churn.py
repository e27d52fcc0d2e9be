"""Realistic trouble: hosts going offline and back, queries failing or running slowly.

All of it is drawn from the host's seed, so a run with the same seed misbehaves the same way.
Process churn (programs starting and stopping) lives in `inventory` (`churn_period`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetwatch.sim.seeding import mix, unit

#: Messages a failing query reports, as osquery words them.
FAILURE_MESSAGES = (
    "distributed query is denylisted",
    "interrupted",
    "database is locked",
)


class ChurnError(ValueError):
    """A churn setting out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class Churn:
    """How much a fleet misbehaves.

    - offline_fraction: share of hosts offline at any moment (after they first enrolled).
    - flap: mean seconds a host stays online or offline before it draws again; 0 keeps the
      offline hosts offline.
    - query_fail_prob: chance that a distributed query fails instead of running.
    - query_delay: a distributed query takes up to this many extra seconds (uniform).
    - process_period: seconds between process start/stop steps; 0 freezes processes.
    """

    offline_fraction: float = 0.0
    flap: float = 0.0
    query_fail_prob: float = 0.0
    query_delay: float = 0.0
    process_period: float = 30.0

    def __post_init__(self) -> None:
        for name in ("offline_fraction", "query_fail_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                raise ChurnError(f"{name.replace('_', '-')} must be between 0 and 1, not {value}")
        for name in ("flap", "query_delay", "process_period"):
            value = getattr(self, name)
            if value < 0 or math.isnan(value) or math.isinf(value):
                raise ChurnError(f"{name.replace('_', '-')} must be a positive number of seconds")


class Presence:
    """When one host is online: time is cut into periods of about `flap` seconds (shifted per
    host); in each, the host is offline with probability `offline_fraction`."""

    __slots__ = ("seed", "fraction", "flap", "origin", "_phase")

    def __init__(self, seed: str, churn: Churn, origin: float) -> None:
        self.seed = seed
        self.fraction = churn.offline_fraction
        self.flap = churn.flap
        self.origin = origin
        self._phase = unit(seed, "flap-phase") * churn.flap if churn.flap else 0.0

    @property
    def always_online(self) -> bool:
        return self.fraction <= 0.0

    def _period(self, now: float) -> int:
        if not self.flap:
            return 0
        return math.floor((now - self.origin + self._phase) / self.flap)

    def online(self, now: float) -> bool:
        if self.fraction <= 0.0:
            return True
        return unit(self.seed, "offline", self._period(now)) >= self.fraction

    def next_change(self, now: float) -> float | None:
        """When `online` may next change; None if never."""
        if self.fraction <= 0.0 or not self.flap:
            return None
        return self.origin - self._phase + (self._period(now) + 1) * self.flap


def query_failure(seed: str, churn: Churn, name: str, occurrence: int) -> str | None:
    """The error a distributed query reports instead of running, or None if it runs."""
    if churn.query_fail_prob <= 0:
        return None
    if unit(seed, "fail", name, occurrence) >= churn.query_fail_prob:
        return None
    return FAILURE_MESSAGES[mix(seed, "fail-msg", name, occurrence) % len(FAILURE_MESSAGES)]


def query_delay(seed: str, churn: Churn, name: str, occurrence: int) -> float:
    """Extra seconds a distributed query takes."""
    if churn.query_delay <= 0:
        return 0.0
    return churn.query_delay * unit(seed, "delay", name, occurrence)
