"""A `fleetwatch` command run as a subprocess, its output read line by line (the CLI tests)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time


class CommandLines:
    """A running `fleetwatch` command whose stdout lines can be awaited."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, text: str, timeout: float = 30.0) -> list[str]:
        """Lines up to the first one containing `text`."""
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            out.append(line)
            self.seen.append(line)
            if text in line:
                return out
        raise AssertionError(f"no line with {text!r} in {self.seen}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def finish(self, timeout: float = 30.0) -> tuple[int, list[str], str]:
        """Wait for the exit: its code, the lines not yet read and all of stderr."""
        code = self.process.wait(timeout=timeout)
        rest: list[str] = []
        time.sleep(0.1)
        while not self.lines.empty():
            rest.append(self.lines.get())
        assert self.process.stderr is not None
        return code, rest, self.process.stderr.read()
