"""SQLite's WAL checkpoints off the writer's path: a background PASSIVE checkpoint.

In WAL mode SQLite copies the log back into the database file (a checkpoint) from inside a
commit, once the log passes `wal_autocheckpoint` pages (1,000 by default, every ~0.5 s at
2,000 document writes/s). That copy and the database file's fsync run on the writer thread
while it holds the write lock: 10-25 ms under load, and every write queued behind it waits
(bench group_counts: the writer's slowest transactions were these commits). Here a thread
of its own, on a connection of its own, runs `PRAGMA wal_checkpoint(PASSIVE)` every
`INTERVAL` seconds: it copies what is committed without taking the write lock or waiting
for readers, and the sqlite3 module releases the GIL for it.

Auto-checkpoint stays on: it is what starts the log over. Under steady writes a passive
checkpoint never finds the whole log copied (frames are appended while it copies), so with
auto-checkpoint off the log grew without bound in a trial; with it on, the commit that
passes 1,000 pages finds all but the last few hundred frames already copied (bench
group_counts: writer commits over 5 ms went from ~2 a second to none, the log still
bounded at ~1,000 frames). A long read holding an old snapshot stops both until it ends.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from fleetwatch.periodic import PeriodicThread

log = logging.getLogger(__name__)

#: Seconds between two background checkpoints.
INTERVAL = 0.25


class Checkpointer(PeriodicThread):
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on the database at `path` every `interval`
    seconds in a daemon thread, until `stop`."""

    def __init__(self, path: Path, interval: float = INTERVAL) -> None:
        super().__init__("fleetwatch-sqlite-checkpoint", interval)
        self.path = path
        #: Checkpoints run so far.
        self.runs = 0
        #: The last one's (busy, frames in the log, frames of it copied to the database).
        self.last: tuple[int, int, int] | None = None
        self._conn: sqlite3.Connection | None = None

    def _run(self) -> None:
        # Autocommit: the connection never holds a read snapshot between checkpoints (a
        # reader keeps the writer from starting the log over).
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            super()._run()
        finally:
            self._conn.close()
            self._conn = None

    def step(self) -> bool:
        """One passive checkpoint; a failure is logged and retried at the next interval."""
        assert self._conn is not None
        try:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:  # e.g. the file is gone at shutdown: retried next time
            log.warning("background WAL checkpoint failed", exc_info=True)
            return True
        self.last = (int(row[0]), int(row[1]), int(row[2]))
        self.runs += 1
        return True
