"""All destinations of a server, by name: what campaigns and osquery log forwarding send to.

One mechanism for both, one lane per destination (fleetwatch.destinations.lane: its sink,
state and retries). Campaign result rows reach a destination through its follower
(fleetwatch.destinations.follower), which reads them from the change log after a durable
cursor, so a restart or a long outage loses nothing still in the log. osquery's result and
status logs (`log_forward_dir`, `log_forward_url`, or a destination's `osquery_logs`) go on
the lane's bounded in-memory queue. Neither ever makes the sender wait, and a slow
destination holds up only itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from fleetwatch.destinations.events import log_event
from fleetwatch.destinations.follower import Follower
from fleetwatch.destinations.lane import Lane

log = logging.getLogger(__name__)


class Destinations:
    """The named lanes, started and stopped together."""

    def __init__(self, lanes: Sequence[Lane] = ()) -> None:
        self.lanes = {lane.name: lane for lane in lanes}
        self._loggers = [lane for lane in lanes if lane.log_types]
        #: Each destination's reader of the change log, by name (set by `follow`).
        self.followers: dict[str, Follower] = {}

    def follow(self, followers: Sequence[Follower]) -> None:
        """Give destinations their change-log readers (before `start`)."""
        self.followers.update((f.lane.name, f) for f in followers)

    def names(self) -> list[str]:
        """What a campaign's `destinations` may list, sorted: the `[destinations.NAME]`
        lanes (log forwarding's own lanes take osquery logs only)."""
        return sorted(name for name, lane in self.lanes.items() if lane.campaign_rows)

    def forwards_logs(self) -> bool:
        return bool(self._loggers)

    def submit_logs(self, host_id: int, log_type: str, items: Sequence[Any]) -> None:
        """Queue a stored batch of osquery log items for the destinations forwarding them."""
        lanes = [lane for lane in self._loggers if log_type in lane.log_types]
        if not items or not lanes:
            return
        events = [log_event(host_id, log_type, item) for item in items]
        for lane in lanes:
            lane.put(events)

    def queue_depths(self) -> dict[str, int]:
        """Events waiting per destination name."""
        return {name: self._queued(name) for name in self.lanes}

    def _queued(self, name: str) -> int:
        follower = self.followers.get(name)
        return len(self.lanes[name].queue) + (len(follower.pending) if follower else 0)

    def views(self) -> list[dict[str, Any]]:
        """Each destination's settings (no secret) and state, by name."""
        views = []
        for name in sorted(self.lanes):
            view = self.lanes[name].view()
            view["queued"] = self._queued(name)
            follower = self.followers.get(name)
            if follower is not None:
                # the change-log sequence delivered through, and what the log lost first
                view["delivering"] = follower.lease.held  # this node sends campaign rows
                view["cursor"] = follower.cursor
                view["skipped_changes"] = follower.skipped_changes
                view["retrying"] = view["retrying"] or follower.failures > 0
            views.append(view)
        return views

    def start(self) -> None:
        for lane in self.lanes.values():
            lane.start()
        for follower in self.followers.values():
            follower.start()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop following the log (after the batch in flight), deliver what is queued (up
        to `drain_timeout` s over all), then stop. One that fails to stop is logged; the
        others stop all the same."""
        # Together: each may take its grace period to finish a send to a stuck receiver.
        followers = list(self.followers.values())
        outcomes = await asyncio.gather(*(f.stop() for f in followers), return_exceptions=True)
        for follower, outcome in zip(followers, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error(
                    "destination %s did not stop cleanly",
                    follower.lane.name,
                    exc_info=outcome,
                )
        deadline = time.monotonic() + drain_timeout
        for lane in self.lanes.values():
            try:
                await lane.stop(deadline)
            except Exception:
                log.exception("destination %s did not stop cleanly", lane.name)
