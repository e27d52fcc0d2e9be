"""Result and status log lines as osquery writes them, and the buffer the logger sends from.

Lines are kept serialized (bytes), so a batch body is a join, not a re-encode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from fleetwatch.sim.profile import OSQUERY_VERSION, calendar_time

INFO, WARNING, ERROR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class LineContext:
    """What every line of one host carries at the moment it is written."""

    host_identifier: str
    unix_time: int
    decorations: Mapping[str, str]
    top_level: bool = False

    def header(self) -> dict[str, object]:
        head: dict[str, object] = {
            "hostIdentifier": self.host_identifier,
            "calendarTime": calendar_time(self.unix_time),
            "unixTime": self.unix_time,
        }
        if self.top_level:
            head.update(self.decorations)
        else:
            head["decorations"] = dict(self.decorations)
        return head


def result_events(
    ctx: LineContext,
    name: str,
    epoch: int,
    counter: int,
    added: Iterable[bytes],
    removed: Iterable[bytes],
) -> list[bytes]:
    """Event-format lines (one per row; `added`/`removed` are serialized row objects)."""
    base = {"name": name, **ctx.header(), "epoch": epoch, "counter": counter, "numerics": False}
    lines = []
    for action, rows in (("removed", removed), ("added", added)):
        for row in rows:
            lines.append(orjson.dumps({**base, "columns": orjson.Fragment(row), "action": action}))
    return lines


def result_batch(
    ctx: LineContext,
    name: str,
    epoch: int,
    counter: int,
    added: list[bytes],
    removed: list[bytes],
) -> bytes:
    """Batch-format line (`--logger_event_type=false`): one `diffResults` object."""
    diff = {
        "removed": [orjson.Fragment(r) for r in removed],
        "added": [orjson.Fragment(r) for r in added],
    }
    return orjson.dumps(
        {
            "diffResults": diff,
            "name": name,
            **ctx.header(),
            "epoch": epoch,
            "counter": counter,
            "numerics": False,
        }
    )


def snapshot_lines(
    ctx: LineContext, name: str, epoch: int, counter: int, rows: list[bytes], per_row: bool
) -> list[bytes]:
    """A snapshot query's output: one `snapshot` object, or one event per row."""
    base = {"name": name, **ctx.header(), "epoch": epoch, "counter": counter, "numerics": False}
    if per_row:
        return [
            orjson.dumps({**base, "columns": orjson.Fragment(r), "action": "snapshot"})
            for r in rows
        ]
    return [
        orjson.dumps({"snapshot": [orjson.Fragment(r) for r in rows], "action": "snapshot", **base})
    ]


def status_line(ctx: LineContext, severity: int, filename: str, line: int, message: str) -> bytes:
    """A status log line (glog record) in osquery 5.10+ shape (numbers are numbers)."""
    head = ctx.header()
    decorations = head.pop("decorations", None)
    record: dict[str, object] = {
        **head,
        "severity": severity,
        "filename": filename,
        "line": line,
        "message": message,
        "version": OSQUERY_VERSION,
    }
    if decorations is not None:
        record["decorations"] = decorations
    return orjson.dumps(record)


@dataclass(slots=True)
class Batch:
    """Lines taken for one flush; the ones not delivered go back to the buffer."""

    results: list[bytes]
    statuses: list[bytes]


class LogBuffer:
    """Buffered result and status lines, oldest first, at most `limit` (oldest dropped)."""

    __slots__ = ("_lines", "limit", "dropped")

    def __init__(self, limit: int) -> None:
        self._lines: deque[tuple[bool, bytes]] = deque()
        self.limit = max(1, limit)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines)

    def add_results(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            self._append((False, line))

    def add_status(self, line: bytes) -> None:
        self._append((True, line))

    def _append(self, item: tuple[bool, bytes]) -> None:
        self._lines.append(item)
        while len(self._lines) > self.limit:
            self._lines.popleft()
            self.dropped += 1

    def take(self, max_lines: int) -> Batch:
        """Remove up to `max_lines` of the oldest lines, split into results and statuses."""
        batch = Batch([], [])
        for _ in range(min(max_lines, len(self._lines))):
            is_status, line = self._lines.popleft()
            (batch.statuses if is_status else batch.results).append(line)
        return batch

    def give_back(self, results: list[bytes], statuses: list[bytes]) -> None:
        """Return undelivered lines to the front, so they go out first next time.

        Their exact interleaving is not kept: results first, as osquery scans them.
        """
        for line in reversed(statuses):
            self._lines.appendleft((True, line))
        for line in reversed(results):
            self._lines.appendleft((False, line))
        while len(self._lines) > self.limit:
            self._lines.popleft()
            self.dropped += 1


def log_body(node_key: str, log_type: str, lines: list[bytes]) -> bytes:
    """The logger request body: node_key, log_type and the lines as the `data` array."""
    head = orjson.dumps({"node_key": node_key, "log_type": log_type})
    return head[:-1] + b',"data":[' + b",".join(lines) + b"]}"
