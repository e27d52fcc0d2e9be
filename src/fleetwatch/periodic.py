"""Background loops that stop between their steps, never inside one.

Cancelling a task in the middle of a database write cuts its transaction short: whatever
the step had taken out to save is lost unless it puts it back, and asyncpg may leave the
connection's socket open behind SQLAlchemy's pool (sqlalchemy#8145, asyncpg#1156). So
`Periodic.stop` asks the loop to end, lets a running step finish (within a grace period),
and cancels only a loop that is still stuck after it. A loop never dies of an exception (a step's,
or its interval's), and `stop` never raises one: one broken loop must not keep the rest of a
shutdown from running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: How long `stop` lets a running step finish before cancelling it.
STOP_GRACE = 10.0
#: Seconds to the next step when the interval itself could not be computed.
FALLBACK_INTERVAL = 5.0

Step = Callable[[], Awaitable[None]]


class Periodic:
    """Runs `step` every `interval` seconds in a background task until stopped.

    A failing step is logged and retried at the next interval: the loop never dies of it.
    `poke()` runs the next step at once (e.g. work became due early).
    """

    def __init__(
        self,
        name: str,
        step: Step,
        interval: float | Callable[[], float],
        *,
        failure: str = "background step failed",
        run_first: bool = False,
    ) -> None:
        self.name = name
        self.step = step
        self._interval = interval
        self.failure = failure
        self._run_first = run_first
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        value = self._interval
        return value() if callable(value) else value

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop (its first step runs at once with run_first, else after one
        interval)."""
        if self._task is None:
            self._stopping = False
            if self._run_first:
                self._wake.set()
            self._task = asyncio.create_task(self._run(), name=self.name)

    def poke(self) -> None:
        """Run the next step now instead of at the end of the interval."""
        self._wake.set()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """End the loop after its current step (cancelled if that takes over `grace` s)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait([task], timeout=grace)
        if not done:
            log.warning("%s did not finish its step within %.0f s; cancelled", self.name, grace)
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # the loop died (it should not): the rest of a shutdown goes on
            log.exception("%s had stopped with an error", self.name)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_interval())
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.step()
            except Exception:  # retried next interval; never kill the loop
                log.exception("%s: %s", self.name, self.failure)

    def _next_interval(self) -> float:
        """The interval, or FALLBACK_INTERVAL when computing it failed (logged like a step)."""
        try:
            return self.interval
        except Exception:
            log.exception("%s: could not compute its interval", self.name)
            return FALLBACK_INTERVAL


class PeriodicThread:
    """Runs `step` every `interval` seconds in a daemon thread until `stop`: the thread-side
    twin of `Periodic`, for work that blocks in C with the GIL released (a WAL checkpoint, a
    heap trim), so the event loop never waits for it.

    Subclasses define `step`, which returns False to end the thread (e.g. after an error
    that would repeat), and may override `_run` to hold a resource for the thread's life."""

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start the thread; False if it runs already (a second call finds it started)."""
        if self._thread is not None:
            return False
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop after the step under way, if any (blocks until the thread ends)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def step(self) -> bool:
        """One step; False ends the thread."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            if not self.step():
                return
