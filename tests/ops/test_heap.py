"""The heap trimmer: freed C heap pages go back to the system (RSS measured, not timed)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from fleetwatch.ops.heap import HeapTrimmer, trim_heap

#: Allocates 64 MiB in 4 KiB blocks (below malloc's mmap threshold: they live in the heap),
#: frees 7 in 8 (the survivors pin the heap, so nothing is returned at free time), and
#: prints RSS after the frees and after a trim, in KiB.
FRAGMENT = """
import sys
from fleetwatch.ops.heap import trim_heap

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

blocks = [bytes(4096) for _ in range(16384)]
kept = blocks[::8]
del blocks
freed = rss()
trimmed = trim_heap() if sys.argv[1] == "trim" else False
print(freed, rss(), trimmed, len(kept))
"""


def _run(mode: str) -> tuple[int, int, bool]:
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENT, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1]), out[2] == "True"


def test_freed_heap_pages_stay_mapped_until_trimmed() -> None:
    freed, after, _ = _run("keep")
    assert freed - after < 8 * 1024  # without a trim, the 56 MiB freed are still resident
    freed, after, trimmed = _run("trim")
    assert trimmed
    assert freed - after >= 28 * 1024  # at least half of the 56 MiB freed went back


def test_the_trimmer_trims_until_stopped() -> None:
    def threads() -> int:  # the server's own trimmer may run in this process too
        return [t.name for t in threading.enumerate()].count("fleetwatch-heap")

    before = threads()
    trimmer = HeapTrimmer(interval=0.01)
    assert trimmer.start()
    assert not trimmer.start()  # one thread per trimmer
    assert threads() == before + 1
    deadline = time.monotonic() + 30
    while trimmer.trims < 3:
        assert time.monotonic() < deadline, "the trimmer never trimmed"
        time.sleep(0.01)
    trimmer.stop()
    done = trimmer.trims
    assert threads() == before
    assert trimmer.trims == done  # nothing after stop
    assert trim_heap()  # glibc here: the call is available
