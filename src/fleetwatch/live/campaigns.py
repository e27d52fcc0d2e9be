"""Live query campaigns: create, dispatch to hosts, ingest answers, totals, finish, expire.

A campaign resolves its targets to a host set when it is created; the hosts online then are
the ones it waits for. It is a query source of the distributed API: from memory, each host
is offered `fleet_distributed_query_<id>` on every check-in until its answer arrives, so a
reply lost to a timeout costs nothing and a host that answered is never asked twice. Hosts
offline at creation get the query when they come back, until the campaign's queue expiry
(their results say `queued`).

Every answer is stored as a `fleet:result` document (one per host per campaign, written in
group-committed batches by the index), so results stream through the change log like any
continuous query and survive the browser closing. The campaign itself is a `fleet:campaign`
document at `/fleet/campaigns/{id}`, written when its status changes.

The in-memory state follows the change log, not the requests: a campaign becomes active on
a node when its documents are committed, and a host stops being pending when its result
is. So on a cluster every node (seeing every change, in order) offers the query to the
hosts checking in on it, counts the same totals, and wakes its own held hosts when a
campaign created elsewhere arrives. Deadlines, queue expiry and purging are once-only
jobs: only the holder of the `campaigns` lease writes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fleetwatch.bus.bus import Lease, LocalLease
from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.targets import LabelLookup
from fleetwatch.index import DocumentIndex
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaign_answers import CampaignAnswers
from fleetwatch.live.campaign_completion import CampaignCompletion
from fleetwatch.live.campaign_create import CampaignCreation
from fleetwatch.live.campaign_destinations import Names
from fleetwatch.live.campaign_docs import PREFIX
from fleetwatch.live.campaign_reads import CampaignReads
from fleetwatch.periodic import Periodic

#: How often the sweeper checks deadlines (seconds).
SWEEP_INTERVAL = 0.25


class CampaignService(CampaignCreation, CampaignAnswers, CampaignReads, CampaignCompletion):
    """Runs live query campaigns; also the distributed query source for them."""

    prefix = PREFIX

    def __init__(
        self,
        settings: Settings,
        index: DocumentIndex,
        hosts: HostService,
        wakeups: HostWakeups,
        labels: LabelLookup | None = None,
        known_team: Callable[[int], bool] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.hosts = hosts
        self.wakeups = wakeups
        self.labels: LabelLookup = labels or (lambda _id: None)
        self.known_team: Callable[[int], bool] = known_team or (lambda _id: False)
        self._active: dict[int, Campaign] = {}
        #: host id -> ids of active campaigns still waiting for that host.
        self._by_host: dict[int, set[int]] = {}
        self._sweeper = Periodic(
            "fleetwatch-campaigns",
            self._sweep_step,
            SWEEP_INTERVAL,
            failure="campaign sweep failed",
        )
        self._last_purge = 0.0
        self._done: dict[int, asyncio.Event] = {}
        #: Who may write deadlines, expiry and purges (always this node when alone).
        self.lease: Lease = lease or LocalLease("campaigns")
        #: Target documents seen, waiting for their campaign document (same transaction).
        self._targets: dict[int, dict[str, Any]] = {}
        #: Campaigns this node is creating: it wakes their hosts itself, when it chooses.
        self._creating: set[int] = set()
        #: Per user, campaigns being created on this node (not active yet): counted against
        #: max_campaigns_per_user so concurrent requests cannot overshoot it.
        self._starting: dict[int, int] = {}
        index.add_listener(self._on_changes)
        #: The kill switch; the app replaces it with the runtime setting (fleet.app_config).
        self.disabled: Callable[[], bool] = lambda: settings.live_queries_disabled
        #: The destination names a campaign may list (the app sets them from the settings).
        self.destination_names: Names = tuple
        #: Told each committed answer of a campaign with destinations, on the node that
        #: stored it (the app sends its rows there; it must not wait).

    def start(self) -> None:
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
