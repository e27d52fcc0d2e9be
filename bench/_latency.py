"""What the live query latency benchmarks measure with (bench_live_latency, bench_fleet,
bench_cluster, bench_workers): check-in modes, latency spreads, an SSE parser and request-rate
arithmetic. Pure helpers, tested in tests/bench/test_live_latency.py.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench._harness import percentile


@dataclass(frozen=True)
class Mode:
    """One server configuration: distributed/read hold and the pushed distributed_interval."""

    hold: float
    interval: int

    @property
    def name(self) -> str:
        kind = "long-poll" if self.hold > 0 else "polling"
        return f"{kind} H={self.hold:g} I={self.interval}"

    @property
    def cycle(self) -> float:
        """Seconds between two check-ins of an idle host."""
        return self.hold + self.interval


def parse_modes(text: str) -> list[Mode]:
    """`"10:10,0:10"` -> modes (HOLD:INTERVAL, seconds); exactly one must have hold 0."""
    modes: list[Mode] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        hold_text, sep, interval_text = part.partition(":")
        if not sep:
            raise ValueError(f"mode {part!r} is not HOLD:INTERVAL")
        try:
            hold, interval = float(hold_text), int(interval_text)
        except ValueError as exc:
            raise ValueError(f"mode {part!r} is not HOLD:INTERVAL (numbers)") from exc
        if not 0 <= hold < 14 or math.isnan(hold):
            raise ValueError(f"mode {part!r}: hold must be between 0 and 14 s (osquery: 16)")
        if not 1 <= interval <= 3600:
            raise ValueError(f"mode {part!r}: interval must be between 1 and 3600 s")
        mode = Mode(hold, interval)
        if mode in modes:
            raise ValueError(f"mode {part!r} is given twice")
        modes.append(mode)
    if sum(1 for m in modes if m.hold == 0) != 1:
        raise ValueError("give exactly one mode with hold 0 (the polling baseline)")
    return modes


@dataclass(frozen=True)
class Spread:
    """Percentiles of a set of latencies, in seconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_s": round(self.p50, 4),
            "p95_s": round(self.p95, 4),
            "p99_s": round(self.p99, 4),
            "max_s": round(self.max, 4),
        }

    def line(self) -> str:
        return (
            f"p50 {self.p50:.3f} s, p95 {self.p95:.3f} s, p99 {self.p99:.3f} s, "
            f"max {self.max:.3f} s (n={self.count:,})"
        )


def spread(values: Sequence[float]) -> Spread:
    """p50/p95/p99/max of latencies (linear interpolation, as `bench._harness.percentile`)."""
    if not values:
        raise ValueError("no latencies")
    ordered = sorted(values)
    return Spread(
        len(ordered),
        percentile(ordered, 50),
        percentile(ordered, 95),
        percentile(ordered, 99),
        ordered[-1],
    )


def epoch(iso_time: str) -> float:
    """Unix time of an RFC 3339 timestamp as the API writes them (`...Z`)."""
    return dt.datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


class SseParser:
    """Server-Sent Events from lines: `feed(line)` returns (event, data) when one ends."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data:
                self._event = "message"
                return None
            out = (self._event, "\n".join(self._data))
            self._event, self._data = "message", []
            return out
        if line.startswith(":"):
            return None  # comment (keep-alive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def agent_request_counts(metrics_text: str) -> dict[str, float]:
    """Agent API requests by endpoint from the Prometheus text (all outcomes summed)."""
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("fleetwatch_agent_requests_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        start = labels.find('endpoint="')
        if start < 0:
            continue
        start += len('endpoint="')
        endpoint = labels[start : labels.index('"', start)]
        counts[endpoint] = counts.get(endpoint, 0.0) + float(value)
    return counts


def per_host_rate(before: float, after: float, hosts: int, seconds: float) -> float:
    """Requests per second per host between two counter readings."""
    if hosts <= 0 or seconds <= 0:
        return 0.0
    return (after - before) / hosts / seconds
