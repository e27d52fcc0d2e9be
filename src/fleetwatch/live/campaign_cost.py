"""What a campaign's query cost its hosts: osquery's per-query stats, and their spread.

osquery (5.8+) sends `stats` beside each distributed answer: `wall_time_ms`, `user_time`,
`system_time` (milliseconds) and `memory` (bytes), as numbers or, from some versions and
proxies, as strings; an object is empty when no sample was taken. A result keeps them as
numbers (`result_stats`), so the results endpoint can sort by them in the store.

A campaign's `cost` is p50, p95 and max of wall time and memory over its answers. It is
kept as answers are counted, in a DDSketch per measure (bounded memory whatever the number
of answers, quantiles within 1 % of the true value; the max is exact), so showing it costs
nothing per request even at 100,000 answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddsketch import DDSketch

from fleetwatch.numeric_text import numeric_value

#: The stats osquery sends per query, in its order.
STAT_FIELDS = ("wall_time_ms", "user_time", "system_time", "memory")
#: The stats a campaign's `cost` summarizes (and the results endpoint can sort by).
COST_FIELDS = ("wall_time_ms", "memory")
#: Relative accuracy of the quantiles.
RELATIVE_ACCURACY = 0.01


def result_stats(raw: Any) -> dict[str, int | float]:
    """osquery's stats object as numbers: the known fields that are numbers or numeric
    strings, non-negative (osquery sends unsigned counters); anything else is left out."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, int | float] = {}
    for name in STAT_FIELDS:
        value = raw.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, str):
            number = numeric_value(value.strip())
            if number is None:
                continue
            value = number
        if not isinstance(value, int | float) or value != value or value < 0:
            continue
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            value = int(value)
        out[name] = value
    return out


@dataclass
class _Measure:
    sketch: DDSketch = field(default_factory=lambda: DDSketch(RELATIVE_ACCURACY))
    max: float | None = None

    def add(self, value: float) -> None:
        self.sketch.add(float(value))
        self.max = value if self.max is None or value > self.max else self.max

    def to_json(self) -> dict[str, float | None]:
        if self.max is None:
            return {"p50": None, "p95": None, "max": None}
        return {
            "p50": self._quantile(0.5),
            "p95": self._quantile(0.95),
            "max": _plain(self.max),
        }

    def _quantile(self, q: float) -> float:
        value = self.sketch.get_quantile_value(q)
        assert value is not None and self.max is not None  # not empty
        # the sketch answers within 1 %: never above the exact max, and rounded (osquery's
        # figures are whole milliseconds and bytes)
        return _plain(min(round(value), self.max))


def _plain(value: float) -> float:
    return int(value) if float(value).is_integer() else value


@dataclass
class CampaignCost:
    """p50, p95 and max of each COST_FIELDS stat over the answers that reported it."""

    measures: dict[str, _Measure] = field(
        default_factory=lambda: {name: _Measure() for name in COST_FIELDS}
    )
    #: Answers that reported stats.
    samples: int = 0

    def add(self, stats: Any) -> None:
        """Count one answer's stats (as `result_stats` keeps them)."""
        if not isinstance(stats, dict):
            return
        counted = False
        for name, measure in self.measures.items():
            value = stats.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                measure.add(value)
                counted = True
        self.samples += counted

    def to_json(self) -> dict[str, Any]:
        """`{"samples": n, "wall_time_ms": {"p50", "p95", "max"}, "memory": {...}}`."""
        body: dict[str, Any] = {"samples": self.samples}
        for name, measure in self.measures.items():
            body[name] = measure.to_json()
        return body
