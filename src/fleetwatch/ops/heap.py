"""Handing the C heap's free pages back to the system, so a long-running server's RSS levels off.

A soak of long-polling hosts with a campaign every 15 s (bench/bench_soak.py) showed the
Python heap flat between campaigns (tracemalloc snapshots: no structure grows), yet RSS
climbing: glibc's malloc keeps what threads free. Each SQLite connection has a thread (the
writer's own, aiosqlite's per reader) that gets its own malloc arena, and the pages SQLite's
caches and the drivers' buffers freed there stay mapped, in holes `free` cannot return.
`malloc_trim(0)` walks every arena and returns the whole free pages inside it (madvise), at
the cost of a short walk; the trimmer runs it every `TRIM_INTERVAL` seconds in a thread of
its own (ctypes releases the GIL for the call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

from fleetwatch.periodic import PeriodicThread

log = logging.getLogger(__name__)

#: Seconds between two trims (a trim of a 200-300 MiB heap takes a few milliseconds).
TRIM_INTERVAL = 30.0


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to trim
    return libc


def trim_heap() -> bool:
    """Return the C heap's free pages to the system now; False where malloc cannot."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class HeapTrimmer(PeriodicThread):
    """Trims the heap every `interval` seconds in a daemon thread until stopped."""

    def __init__(self, interval: float = TRIM_INTERVAL) -> None:
        super().__init__("fleetwatch-heap", interval)
        #: Trims done so far.
        self.trims = 0

    def start(self) -> bool:
        """Start trimming; False (and nothing started) where the C library cannot trim or
        the trimmer runs already."""
        return _libc() is not None and super().start()

    def step(self) -> bool:
        """One trim; a failing trim ends the thread, logged (it would fail every time)."""
        try:
            trim_heap()
        except Exception:  # a failing trim must not end the server's thread silently
            log.exception("heap trim failed")
            return False
        self.trims += 1
        return True
