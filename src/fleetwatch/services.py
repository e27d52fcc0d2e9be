"""The running server's services, built once by `create_app` and shared by the adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetwatch.bus.bus import Bus, Invalidations
from fleetwatch.bus.change_fanout import ChangeFanout
from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedService
from fleetwatch.fleet.activities import ActivityService
from fleetwatch.fleet.agent_config import AgentConfigService
from fleetwatch.fleet.app_config import AppConfigService
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.labels import LabelService
from fleetwatch.fleet.login_limits import LoginLimiter
from fleetwatch.fleet.rate_limits import FailureLimiter
from fleetwatch.fleet.result_logs import ResultLogService
from fleetwatch.fleet.secrets import EnrollSecretService
from fleetwatch.fleet.stream_quota import StreamQuota
from fleetwatch.fleet.stream_tokens import StreamTokenWatch
from fleetwatch.fleet.teams import TeamService
from fleetwatch.fleet.users import UserService
from fleetwatch.index import DocumentIndex
from fleetwatch.index.expiry import ExpirySweeper
from fleetwatch.index.retention import ChangeLogRetention
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.live.saved_queries import SavedQueryService
from fleetwatch.ops.operations import Operations
from fleetwatch.policies.automations import PolicyAutomations
from fleetwatch.policies.service import PolicyService
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.tasks import QueryTaskService
from fleetwatch.storage import Database


@dataclass
class Services:
    """Everything a request handler may need: one typed instance per app, no string keys.

    Subsystems add a typed field here when they are built (see `create_app`).
    """

    settings: Settings
    db: Database
    index: DocumentIndex
    users: UserService
    secrets: EnrollSecretService
    hosts: HostService
    agent_config: AgentConfigService
    result_logs: ResultLogService
    wakeups: HostWakeups
    distributed: DistributedService[HostState]
    subscriptions: SubscriptionHub
    query_tasks: QueryTaskService
    expiry: ExpirySweeper
    retention: ChangeLogRetention
    activities: ActivityService
    saved_queries: SavedQueryService
    campaigns: CampaignService
    labels: LabelService
    login_limiter: LoginLimiter
    #: Failed enrolls per client address (None: --enroll-failure-limit 0, no limit).
    enroll_limiter: FailureLimiter | None
    teams: TeamService
    #: Broadcasts and leases between nodes (a no-op bus on a single node).
    bus: Bus
    #: Tells other nodes to reload a cached table.
    invalidations: Invalidations
    #: The change log across nodes (None on a single node).
    fanout: ChangeFanout | None
    #: Runtime server settings (the live query kill switch).
    app_config: AppConfigService
    #: Each user's open task and campaign streams on this node (max_streams_per_user).
    stream_quota: StreamQuota
    #: Ends open streams whose token was revoked (on every node).
    stream_tokens: StreamTokenWatch
    #: Policies: definitions, dispatch, results and counts (fleetwatch.policies).
    policies: PolicyService
    #: Policies' failing/passing events to webhooks.
    policy_automations: PolicyAutomations
    #: Metrics, log forwarding and the metrics port (fleetwatch.ops).
    ops: Operations = field(default_factory=Operations)
