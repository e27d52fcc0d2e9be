"""The hosts and campaign service of the campaign tests, built straight on the services (no
HTTP): hosts `h0`, `h1`, ... (UUIDs `u0`, `u1`, ...) enrolled with the canned details."""

from __future__ import annotations

from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.hosts import HostService
from fleetwatch.index import DocumentIndex
from fleetwatch.live.campaigns import CampaignService
from tests.agent import details_for


async def campaign_fleet(
    index: DocumentIndex, settings: Settings, n: int
) -> tuple[CampaignService, list[HostState]]:
    """A campaign service over `n` enrolled hosts (its host service is `.hosts`)."""
    hosts = HostService(index.db, index, settings)
    await hosts.load()
    states = [
        (await hosts.enroll(f"h{i}", "9", details_for(f"h{i}", f"u{i}"), None))[0] for i in range(n)
    ]
    return CampaignService(settings, index, hosts, HostWakeups()), states
