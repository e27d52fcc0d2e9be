"""Shared helpers for benchmarks: timing, percentiles, a result table, a JSON results file.

The machines are shared and noisy, so every benchmark measures a baseline in the same run
and reports its figures both as absolute numbers and as a ratio against that baseline.
A benchmark builds a `Report`, adds `Measurement`s (one of them the baseline), prints it
with `Report.print()` and records it with `Report.save()`, which appends one JSON line to
`bench/results/<name>.jsonl` and refreshes `bench/results/<name>.latest.json`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where results are written (gitignored).
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --- timing ---------------------------------------------------------------------------


@dataclass
class Stopwatch:
    """Elapsed wall-clock seconds of a `timed()` block (set when the block ends)."""

    started: float = 0.0
    elapsed: float = 0.0


@contextmanager
def timed() -> Iterator[Stopwatch]:
    """Time a block with `time.perf_counter`: `with timed() as t: ...; t.elapsed`."""
    watch = Stopwatch(started=time.perf_counter())
    try:
        yield watch
    finally:
        watch.elapsed = time.perf_counter() - watch.started


# --- statistics -----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks.

    Same definition as numpy's default ("linear"): p=0 is the minimum, p=100 the maximum.
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be between 0 and 100, not {p}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Latencies:
    """Summary of a set of latencies, in seconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    def as_ms(self) -> dict[str, float]:
        """The summary in milliseconds, rounded for printing and JSON."""
        return {
            "mean_ms": round(self.mean * 1e3, 3),
            "p50_ms": round(self.p50 * 1e3, 3),
            "p90_ms": round(self.p90 * 1e3, 3),
            "p99_ms": round(self.p99 * 1e3, 3),
            "max_ms": round(self.max * 1e3, 3),
        }


def summarize(latencies: Sequence[float]) -> Latencies:
    """Count, mean, p50/p90/p99 and max of latencies given in seconds."""
    if not latencies:
        raise ValueError("no latencies to summarize")
    ordered = sorted(latencies)
    return Latencies(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


# --- formatting -----------------------------------------------------------------------


def ratio(value: float, baseline: float) -> float:
    """value / baseline; infinity for a zero baseline with a positive value, 0 for 0/0."""
    if baseline == 0:
        return math.inf if value > 0 else 0.0
    return value / baseline


def format_ratio(value: float, baseline: float) -> str:
    """`value` against `baseline` as e.g. '0.72x (72%)'; 'baseline' when they are one."""
    r = ratio(value, baseline)
    if math.isinf(r):
        return "inf"
    return f"{r:.2f}x ({r * 100:.0f}%)"


def format_number(value: float) -> str:
    """A figure with thousands separators and sensible precision."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


# --- the machine ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on (they only compare within one run)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "loadavg": load,
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line describing the machine, for the top of a report."""
    info = info or machine()
    load = " ".join(str(x) for x in info["loadavg"]) or "?"
    return (
        f"machine: {info['cpus']} cores ({info['cpu']}), Python {info['python']}, "
        f"{info['platform']}, load {load} (shared: compare ratios, not absolutes)"
    )


# --- reports --------------------------------------------------------------------------


@dataclass
class Measurement:
    """One measured figure: e.g. 'check-in' at 5,400 req/s, with optional latencies."""

    name: str
    value: float
    unit: str
    #: True when a bigger value is better (throughput); False for times.
    higher_is_better: bool = True
    latencies: Latencies | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """A benchmark's results: measurements against one baseline, plus free-form notes."""

    bench: str
    baseline: str
    params: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=machine)

    def add(self, measurement: Measurement) -> Measurement:
        self.measurements.append(measurement)
        return measurement

    def get(self, name: str) -> Measurement:
        for m in self.measurements:
            if m.name == name:
                return m
        raise KeyError(f"no measurement named {name!r} in {self.bench}")

    def ratio_of(self, name: str) -> float:
        """The named measurement's value over the baseline's."""
        return ratio(self.get(name).value, self.get(self.baseline).value)

    def table(self) -> str:
        """The result table: absolute values, latencies and the ratio against the baseline."""
        base = self.get(self.baseline)
        with_latency = any(m.latencies is not None for m in self.measurements)
        header = ["measurement", "value", "unit", f"vs {self.baseline}"]
        if with_latency:
            header += ["p50 ms", "p99 ms"]
        rows = []
        for m in self.measurements:
            vs = "baseline" if m is base else format_ratio(m.value, base.value)
            row = [m.name, format_number(m.value), m.unit, vs]
            if with_latency:
                if m.latencies is None:
                    row += ["", ""]
                else:
                    row += [f"{m.latencies.p50 * 1e3:.2f}", f"{m.latencies.p99 * 1e3:.2f}"]
            rows.append(row)
        return format_table(header, rows)

    def print(self) -> None:
        """Print the machine line, parameters, table and notes to stdout."""
        print(f"== {self.bench} ==")
        print(machine_line(self.info))
        if self.params:
            print("params: " + ", ".join(f"{k}={v}" for k, v in self.params.items()))
        print(self.table())
        for note in self.notes:
            print(f"note: {note}")
        sys.stdout.flush()

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form written to the results file."""
        base = self.get(self.baseline)
        return {
            "bench": self.bench,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": self.info,
            "params": self.params,
            "baseline": self.baseline,
            "measurements": [
                {
                    "name": m.name,
                    "value": m.value,
                    "unit": m.unit,
                    "higher_is_better": m.higher_is_better,
                    "ratio": None if m is base else ratio(m.value, base.value),
                    **({"latency": m.latencies.as_ms()} if m.latencies else {}),
                    **m.extra,
                }
                for m in self.measurements
            ],
            "notes": self.notes,
        }

    def save(self, directory: Path = RESULTS_DIR) -> Path:
        """Append one JSON line to `<name>.jsonl` and refresh `<name>.latest.json`."""
        directory.mkdir(parents=True, exist_ok=True)
        record = self.to_json()
        history = directory / f"{self.bench}.jsonl"
        with history.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        latest = directory / f"{self.bench}.latest.json"
        latest.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return history
