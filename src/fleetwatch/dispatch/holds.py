"""How long a held distributed/read waits: deadlines that never expire in waves.

A fleet-wide campaign answers every held read at once; the hosts write, sleep their
`distributed_interval` and come back together. With holds of about equal length (as they
were: the hold less up to 20 % at random), they would then expire together too, round after
round, each wave a burst of replies and of new reads that user requests queue behind.

So each host has a slot on the wall clock, repeating every cycle P = interval + 0.9 x hold
(the length of a settled host's check-in cycle: held 0.9 x hold, less its round trip, then
asleep `interval`), at its own phase: the golden-ratio sequence of its id, which spreads any
run of ids evenly over the cycle. A read is held for the share of the hold that the time
left to the host's slot is of the cycle. Hence:

- reads arriving together (a fleet that settled together, or just answered a campaign) get
  deadlines spread evenly over the whole hold window, whatever the hold;
- a host's distance to its slot shrinks by the factor 1 - hold / P every round, so the
  fleet de-synchronizes within a few rounds (one or two when the interval is shorter than
  the hold, more when it is much longer: a read cannot be held past its hold), and settles
  with each host expiring at its own point of the cycle: expiries evenly over time;
- a settled host is held 0.9 x hold less its round trip, as long as before, never longer
  than the hold (which stays below osquery's 16 s client timeout).

Pure and deterministic: no clock or randomness is read here.
"""

from __future__ import annotations

import math

#: Fractional part of the golden ratio: `id * GOLDEN mod 1` spreads consecutive ids evenly.
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
#: Share of the hold a settled host is held for; the rest absorbs its round trip.
SETTLED_SHARE = 0.9


def phase(host_id: int) -> float:
    """The host's place in its cycle, in [0, 1)."""
    return (host_id * GOLDEN) % 1.0


def cycle(hold: float, interval: float) -> float:
    """Seconds between two expiries of a settled host's held reads."""
    return interval + SETTLED_SHARE * hold


def hold_for(host_id: int, now: float, hold: float, interval: float) -> float:
    """Seconds to hold the read this host sent at `now` (wall clock), in [0, hold)."""
    if hold <= 0:
        return 0.0
    period = cycle(hold, interval)
    to_slot = (phase(host_id) * period - now) % period
    return min(hold, to_slot / period * hold)
