"""Canary campaigns: a uniform random subset of the resolved targets.

`"sample": {"percent": P}` (0 < P <= 100) or `{"count": K}` (K >= 1) on a run: the campaign
asks only the chosen hosts (at least one; a count above the targets takes them all) and
shows `"sample": {"of": total, "chosen": n}`. The hosts it left out are kept with its
targets so that a re-run with `"hosts": "remaining"` asks exactly them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from fleetwatch.fleet.errors import Invalid

_HOW = 'send "sample": {"percent": P} with 0 < P <= 100, or {"count": K} with K >= 1'


@dataclass(frozen=True)
class Sample:
    """How many of the resolved targets to ask: a percentage or a count (exactly one)."""

    percent: float | None = None
    count: int | None = None

    def size(self, total: int) -> int:
        """How many of `total` hosts to choose: at least one, at most all."""
        if self.count is not None:
            wanted = self.count
        else:
            assert self.percent is not None
            # rounded up: a small percentage of a small fleet still asks one host
            wanted = math.ceil(total * self.percent / 100)
        return max(1, min(total, wanted))


def parse_sample(value: Any) -> Sample | None:
    """The `sample` of a run request (None when absent); Invalid says what to send."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1 or not {"percent", "count"} & set(value):
        raise Invalid(f"sample must hold exactly one of percent or count: {_HOW}")
    if "percent" in value:
        percent = value["percent"]
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise Invalid(f"sample.percent must be a number: {_HOW}")
        if not 0 < percent <= 100:
            raise Invalid(f"sample.percent must be over 0 and at most 100, not {percent}: {_HOW}")
        return Sample(percent=float(percent))
    count = value["count"]
    if isinstance(count, bool) or not isinstance(count, int):
        raise Invalid(f"sample.count must be an integer: {_HOW}")
    if count < 1:
        raise Invalid(f"sample.count must be at least one host, not {count}: {_HOW}")
    return Sample(count=count)


def choose(host_ids: Collection[int], sample: Sample, rng: random.Random | None = None) -> set[int]:
    """A uniform random subset of `host_ids` of the sample's size."""
    ordered = sorted(host_ids)  # the same draw for the same seed, whatever the set's order
    return set((rng or _RNG).sample(ordered, sample.size(len(ordered))))


#: Not for secrets: a canary's hosts need only be unbiased, and tests seed their own.
_RNG = random.Random()
