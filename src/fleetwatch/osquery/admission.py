"""Admission control for agent requests: shed at once what would not be answered in time.

osquery gives up on a request 16 s after it started it (connect and TLS included; reference
§0.1) and tries again later, so a request queued past that is wasted work, and a server
that queues every request of a herd (10,000 hosts reconnecting after a restart) spends its
time on requests nobody waits for any more and never drains. So when the backlog is such
that a new request would not be answered within a few seconds, the request is answered at
once, before its body is read, with a JSON `error` osquery treats as a failed attempt (it
retries: an enroll after 1, 4, 9, ... s, config and distributed reads and writes after 1 s
and 4 s, the logger keeps its batch and backs off; reference §1.1, §0.1, §1.3); no
`node_invalid`, so no host drops its key.

Two backlogs are bounded, by count and by the wait they mean:

- requests waiting for their turn in the agent lane (osquery/lane.py): at most
  `agent_queue_limit`; and none once the oldest has waited `agent_queue_wait` seconds, or
  the queue is longer than the lane drains in that time (its measured drain rate);
- enrolls in progress (from arrival to reply; each writes to the database): at most
  `enroll_backlog`; and none once the oldest has been in progress `agent_queue_wait` s, or
  there are more than complete in that time (the measured completion rate).

The rates adapt the bounds to the machine and its load at the time: a burst is shed as it
arrives rather than once its first requests have aged. The counts cap memory and what a
burst can pile up before any rate is known. Held distributed/reads are not a backlog (they
wait for work by design) and are not counted. Sheds are counted by endpoint and reason
(`fleetwatch_agent_shed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from itertools import count

from fleetwatch.osquery.call import Reply, reply
from fleetwatch.osquery.lane import AgentLane

#: Why a request was shed (the `reason` label of the shed counter).
QUEUE_FULL = "queue_full"
QUEUE_SLOW = "queue_slow"
ENROLLS_FULL = "enrolls_full"
ENROLLS_SLOW = "enrolls_slow"
#: Seconds of enrolls in progress over which their completion rate is measured.
RATE_WINDOW = 0.5


class Admission:
    """Decides, as a request arrives, whether it is served or shed (module docstring)."""

    def __init__(
        self,
        lane: AgentLane,
        *,
        queue_limit: int,
        enroll_backlog: int,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lane = lane
        #: 0 turns a bound off.
        self.queue_limit = queue_limit
        self.enroll_backlog = enroll_backlog
        self.max_wait = max_wait
        self.clock = clock
        #: Enrolls in progress: ticket -> arrival, oldest first (dicts keep insertion order).
        self._enrolling: dict[int, float] = {}
        self._tickets = count()
        #: Enrolls completed per second while others were in progress, or None (not known).
        self.enroll_rate: float | None = None
        self._window_start: float | None = None
        self._window_done = 0
        retry = str(max(1, math.ceil(max_wait))).encode()
        self._retry_after = ((b"retry-after", retry),)

    @property
    def enrolling(self) -> int:
        """Enrolls in progress."""
        return len(self._enrolling)

    @property
    def queued(self) -> int:
        """Agent requests waiting for their turn in the lane."""
        return self.lane.waiting

    def refusal(self, enroll: bool) -> str | None:
        """Why a request arriving now must be shed, or None to serve it."""
        lane = self.lane
        waiting = lane.waiting
        if waiting:
            if self.queue_limit and waiting >= self.queue_limit:
                return QUEUE_FULL
            if self.max_wait:
                since = lane.oldest_since
                if since is not None and self.clock() - since >= self.max_wait:
                    return QUEUE_SLOW
                rate = lane.drain_rate
                if rate and waiting >= rate * self.max_wait:
                    return QUEUE_SLOW
        enrolling = len(self._enrolling)
        if enroll and enrolling:
            if self.enroll_backlog and enrolling >= self.enroll_backlog:
                return ENROLLS_FULL
            if self.max_wait:
                oldest = next(iter(self._enrolling.values()))
                if self.clock() - oldest >= self.max_wait:
                    return ENROLLS_SLOW
                rate = self.enroll_rate
                if rate and enrolling >= rate * self.max_wait:
                    return ENROLLS_SLOW
        return None

    def enroll_started(self) -> int:
        """Count an enroll in progress; hand its ticket to `enroll_ended`."""
        ticket = next(self._tickets)
        now = self.clock()
        if not self._enrolling:  # busy from now: a new measurement window
            self._window_start, self._window_done = now, 0
        self._enrolling[ticket] = now
        return ticket

    def enroll_ended(self, ticket: int) -> None:
        """The enroll of this ticket was answered (or its client went away)."""
        if self._enrolling.pop(ticket, None) is None:
            return
        self._window_done += 1
        start = self._window_start
        if start is None:
            return
        now = self.clock()
        if now - start >= RATE_WINDOW:
            rate = self._window_done / (now - start)
            old = self.enroll_rate
            self.enroll_rate = rate if old is None else (old + rate) / 2
            self._window_start, self._window_done = now, 0

    def shed_reply(self, enroll: bool) -> Reply:
        """The answer to a shed request: JSON osquery parses as a failed attempt."""
        what = "enrolling other hosts" if enroll else "answering other hosts"
        seconds = self._retry_after[0][1].decode()
        return reply(
            {"error": f"the server is busy {what}; retry in {seconds} s"},
            503,
            self._retry_after,
        )
