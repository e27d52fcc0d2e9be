"""Simulated osquery hosts that run real SQL on their own tables (`fleetwatch simulate`).
Imports nothing else of fleetwatch: it speaks to a server over HTTP only.

The public surface for tests, benchmarks and the CLI is listed in `__all__`.
"""

from fleetwatch.sim.agent_config import AgentConfig, ScheduledQuery, parse_config
from fleetwatch.sim.churn import Churn, ChurnError
from fleetwatch.sim.engine import Engines, QueryResult
from fleetwatch.sim.flags import AgentFlags
from fleetwatch.sim.fleet import Fleet, raise_open_file_limit
from fleetwatch.sim.host import SimHost
from fleetwatch.sim.platforms import PLATFORMS, PlatformSpecError, parse_platforms
from fleetwatch.sim.profile import OSQUERY_VERSION, HostProfile, make_profile
from fleetwatch.sim.stats import FleetTotals, HostStats, ReceivedQuery, SentResult
from fleetwatch.sim.transport import Server, TransportError, UrlError

__all__ = [
    "OSQUERY_VERSION",
    "PLATFORMS",
    "AgentConfig",
    "AgentFlags",
    "Churn",
    "ChurnError",
    "Engines",
    "Fleet",
    "FleetTotals",
    "HostProfile",
    "HostStats",
    "PlatformSpecError",
    "QueryResult",
    "ReceivedQuery",
    "ScheduledQuery",
    "SentResult",
    "Server",
    "SimHost",
    "TransportError",
    "UrlError",
    "make_profile",
    "parse_config",
    "parse_platforms",
    "raise_open_file_limit",
]
