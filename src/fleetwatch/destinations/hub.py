"""All destinations of a server, by name: what campaigns and osquery log forwarding send to.

One mechanism for both: a campaign (or saved query) naming `"destinations": ["siem"]` and
osquery's result and status logs (`log_forward_dir`, `log_forward_url`, or a destination's
`osquery_logs`) put events on the same per-destination lanes (fleetwatch.destinations.lane).
Submitting never waits, and a slow destination fills only its own queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from fleetwatch.destinations.events import Event, log_event
from fleetwatch.destinations.lane import Lane


class Destinations:
    """The named lanes, started and stopped together."""

    def __init__(self, lanes: Sequence[Lane] = ()) -> None:
        self.lanes = {lane.name: lane for lane in lanes}
        self._loggers = [lane for lane in lanes if lane.log_types]

    def names(self) -> list[str]:
        """The destination names, sorted (what a campaign's `destinations` may list)."""
        return sorted(self.lanes)

    def forwards_logs(self) -> bool:
        return bool(self._loggers)

    def submit(self, names: Iterable[str], events: Sequence[Event]) -> None:
        """Queue `events` for each named destination (unknown names are skipped)."""
        if not events:
            return
        for name in names:
            lane = self.lanes.get(name)
            if lane is not None:
                lane.put(events)

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
        return {name: len(lane.queue) for name, lane in self.lanes.items()}

    def views(self) -> list[dict[str, Any]]:
        """Each destination's settings (no secret) and state, by name."""
        return [self.lanes[name].view() for name in self.names()]

    def start(self) -> None:
        for lane in self.lanes.values():
            lane.start()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what is queued (up to `drain_timeout` s over all), then stop."""
        deadline = time.monotonic() + drain_timeout
        for lane in self.lanes.values():
            await lane.stop(deadline)
