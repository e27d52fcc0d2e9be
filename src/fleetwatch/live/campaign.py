"""A campaign's state in memory: its targets, who answered, its totals and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetwatch.fleet.host_state import iso
from fleetwatch.fleet.targets import Targets
from fleetwatch.live.campaign_cost import CampaignCost
from fleetwatch.live.campaign_limits import CampaignLimits


@dataclass
class Campaign:
    """A campaign's state in memory (the source of truth while it is active)."""

    id: int
    query: str
    query_id: int | None
    user_id: int | None
    targets: Targets
    host_ids: frozenset[int]
    online_at_start: frozenset[int]
    created_at: float
    deadline: float
    expires_at: float
    status: str = "running"
    finished_at: float | None = None
    #: Targets that have not answered yet.
    pending: set[int] = field(default_factory=set)
    failed: int = 0
    rows: int = 0
    truncated: int = 0
    #: Answers of hosts it waited for that arrived after it expired (counted in responded).
    late: int = 0
    #: A late answer was counted since the campaign document was last written.
    late_unwritten: bool = False
    #: Hosts whose result is committed (counted once, whichever node stored it).
    answered: set[int] = field(default_factory=set)
    #: len(answered & online_at_start): committed answers, not claims, decide when a
    #: campaign is finished (a claimed answer may not be readable yet).
    answered_online: int = 0
    #: The campaign this one re-runs (POST /campaigns/{id}/rerun), if any.
    rerun_of: int | None = None
    #: A canary's `{"of": resolved targets, "chosen": hosts asked}`, if it was sampled.
    sample: dict[str, int] | None = None
    #: Offline targets are asked when they come back (else only those online at start).
    queue_offline: bool = True
    #: Rows and bytes it stores at most (live/campaign_limits.py); None: no limit.
    limits: CampaignLimits | None = None
    #: Bytes of row data stored (counted from committed results, as `rows`).
    stored_bytes: int = 0
    #: The limit reached (`max_rows` or `max_bytes`): no host is asked any more.
    limit_reached: str | None = None
    #: This node wrote the campaign document saying so.
    limit_written: bool = False
    #: p50/p95/max of its answers' wall time and memory (live/campaign_cost.py).
    cost: CampaignCost = field(default_factory=CampaignCost)
    #: Where its result rows are also sent (live/campaign_destinations.py).
    destinations: tuple[str, ...] = ()

    @property
    def unanswered(self) -> int:
        """Online-at-start targets whose answer is not committed yet."""
        return len(self.online_at_start) - self.answered_online

    @property
    def settled(self) -> bool:
        """Over, and every host it asks has a committed answer: nothing can change it any
        more, so it need not stay in memory until its queue expiry (a day by default)."""
        if self.status == "running" or self.pending:
            return False
        asked = self.host_ids if self.queue_offline else self.online_at_start
        return len(self.answered) >= len(asked)  # a claim still being stored is not yet

    @property
    def responded(self) -> int:
        """Targets whose answer is stored."""
        return len(self.answered)

    @property
    def non_responders(self) -> list[int]:
        """Hosts it waited for (online at its start) that have not answered, late or not:
        the same hosts `pending` counts, so a late answer leaves the list."""
        return sorted(self.pending & self.online_at_start)

    #: Version of the campaign document last seen: status writes are conditional on it, so
    #: two nodes finishing the same campaign at once write it once.
    doc_version: int | None = None

    #: len(pending & online_at_start), kept up to date by claim/unclaim: recomputing the
    #: intersection per result made a campaign's cost grow with the square of its hosts.
    _waiting: int | None = None

    @property
    def waiting_for(self) -> int:
        """Online-at-start targets that have not answered."""
        if self._waiting is None:
            self._waiting = len(self.pending & self.online_at_start)
        return self._waiting

    def claim(self, host_id: int) -> None:
        """The host's answer is being stored: it is no longer pending."""
        if host_id in self.pending:
            self.pending.discard(host_id)
            if self._waiting is not None and host_id in self.online_at_start:
                self._waiting -= 1

    def unclaim(self, host_id: int) -> None:
        """Storing the answer failed: the host is pending again (osquery will resend)."""
        if host_id not in self.pending:
            self.pending.add(host_id)
            if self._waiting is not None and host_id in self.online_at_start:
                self._waiting += 1

    def totals(self) -> dict[str, int]:
        return {
            "targeted": len(self.host_ids),
            "online": len(self.online_at_start),
            "offline": len(self.host_ids) - len(self.online_at_start),
            "responded": self.responded,
            "failed": self.failed,
            "pending": self.waiting_for,
            "queued": len(self.pending) - self.waiting_for,
            "rows": self.rows,
            "truncated": self.truncated,
            "late": self.late,
        }

    def to_json(self) -> dict[str, Any]:
        """The campaign as the API shows it (and as its document stores it)."""
        body: dict[str, Any] = {
            "id": self.id,
            "query": self.query,
            "query_id": self.query_id,
            "user_id": self.user_id,
            "status": self.status,
            "targets": self.targets.to_json(),
            "totals": self.totals(),
            "created_at": iso(self.created_at),
            "deadline": iso(self.deadline),
            "expires_at": iso(self.expires_at),
            "finished_at": iso(self.finished_at),
            "rerun_of": self.rerun_of,
            "sample": self.sample,
            "cost": self.cost.to_json(),
            "truncated": self.limit_reached is not None,
            "truncated_reason": self.limit_reached,
            "destinations": list(self.destinations),
        }
        if self.limits is not None:
            body["limits"] = self.limits.to_json()
        if self.status != "running":
            body["non_responders"] = self.non_responders
        return body
