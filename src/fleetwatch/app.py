"""`create_app(settings)`: builds the services and mounts the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI

from fleetwatch import __version__
from fleetwatch.api import (
    activities,
    agent_config,
    app_config,
    health,
    hosts,
    live_queries,
    policies,
    saved_queries,
    scrape,
    secrets,
    session,
    users,
)
from fleetwatch.api import campaign_history as campaign_history_api
from fleetwatch.api import destinations as destinations_api
from fleetwatch.api import documents as documents_api
from fleetwatch.api import labels as labels_api
from fleetwatch.api import query_tasks as query_tasks_api
from fleetwatch.api import task_streams as task_streams_api
from fleetwatch.api import teams as teams_api
from fleetwatch.api.auth import global_user
from fleetwatch.api.errors import install_error_handlers
from fleetwatch.api.json_body import JsonBodyMiddleware
from fleetwatch.bus.bus import Bus, Invalidations, LocalBus
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
from fleetwatch.fleet.login_limits import LoginLimiter, SharedLoginLimiter
from fleetwatch.fleet.rate_limits import FailureLimiter, SharedFailureLimiter
from fleetwatch.fleet.result_logs import ResultLogService
from fleetwatch.fleet.secrets import EnrollSecretService
from fleetwatch.fleet.stream_quota import StreamQuota
from fleetwatch.fleet.stream_tokens import StreamTokenWatch
from fleetwatch.fleet.teams import TeamService
from fleetwatch.fleet.users import UserService
from fleetwatch.index import DocumentIndex
from fleetwatch.index.expiry import ExpirySweeper
from fleetwatch.index.retention import ChangeLogRetention
from fleetwatch.instrument import instrument
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.live.saved_queries import SavedQueryService
from fleetwatch.live.scope import owner_scopes
from fleetwatch.ops.middleware import RequestMiddleware
from fleetwatch.ops.openapi import install_openapi
from fleetwatch.ops.operations import start_operations, stop_operations
from fleetwatch.osquery import routes as osquery_routes
from fleetwatch.osquery.detail_queries import DetailQuerySource
from fleetwatch.osquery.lean_app import FleetwatchApp, LeanAgentApp
from fleetwatch.policies.automations import PolicyAutomations
from fleetwatch.policies.dispatch import PolicySource
from fleetwatch.policies.results import PolicyResults
from fleetwatch.policies.service import PolicyService
from fleetwatch.policies.store import PolicyStore
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.tasks import QueryTaskService
from fleetwatch.responses import JsonResponse
from fleetwatch.services import Services
from fleetwatch.storage import Database
from fleetwatch.web.routes import install_web

log = logging.getLogger(__name__)


def build_bus(settings: Settings, db: Database) -> Bus:
    """The in-process bus, or Redis when the settings name one (a cluster)."""
    if not settings.redis_url:
        return LocalBus()
    if db.is_sqlite:
        raise ValueError(
            "a cluster (--redis-url) needs a shared PostgreSQL database (--database-url "
            "postgresql://...): SQLite cannot be shared between nodes"
        )
    from fleetwatch.bus.redis_bus import RedisBus

    return RedisBus(settings.redis_url, lease_ttl=settings.cluster_lease_ttl)


def login_limiter(bus: Bus, settings: Settings) -> LoginLimiter:
    """Login buckets shared by the cluster (in Redis), or this node's own."""
    from fleetwatch.bus.redis_bus import RedisBus

    if isinstance(bus, RedisBus):
        return SharedLoginLimiter(bus.redis, address_limit=settings.login_address_limit)
    return LoginLimiter(address_limit=settings.login_address_limit)


def enroll_limiter(settings: Settings, bus: Bus) -> FailureLimiter | None:
    """Failed enrolls per address, shared by the cluster (in Redis) or this node's own."""
    from fleetwatch.bus.redis_bus import RedisBus

    limit = settings.enroll_failure_limit
    if limit == 0:
        return None
    if isinstance(bus, RedisBus):
        return SharedFailureLimiter(bus.redis, "enroll", limit, limit)
    return FailureLimiter("enroll", limit, limit)


def build_services(settings: Settings) -> Services:
    """Construct (but do not start) every service for these settings."""
    db = Database(settings.effective_database_url())
    index = DocumentIndex(db)
    bus = build_bus(settings, db)
    invalidations = Invalidations(bus)
    hosts = HostService(db, index, settings, bus)
    wakeups = HostWakeups()
    distributed = DistributedService[HostState](settings, wakeups)
    distributed.register(DetailQuerySource(hosts))
    labels = LabelService(db, index, hosts, settings)
    distributed.register(labels)
    teams = TeamService(db, index, follow=bus.clustered)
    campaigns = CampaignService(
        settings,
        index,
        hosts,
        wakeups,
        labels=labels.info,
        known_team=teams.known,
        lease=bus.lease("campaigns"),
    )
    distributed.register(campaigns)
    app_config = AppConfigService(index, settings)
    campaigns.disabled = lambda: app_config.live_query_disabled
    hub = SubscriptionHub(index, queue_limit=settings.subscriber_queue_limit)
    users = UserService(db, session_idle_timeout=settings.session_idle_timeout)
    query_tasks = QueryTaskService(
        index,
        hub,
        settings,
        invalidations,
        webhook_lease=bus.lease("webhooks"),
        owner_scopes=partial(owner_scopes, users),
    )
    users.on_roles_change = query_tasks.owner_changed
    policy_store = PolicyStore(db)
    policy_results = PolicyResults(index)
    policy_source = PolicySource({}, policy_results, index, wakeups, bus)
    distributed.register(policy_source)
    policies = PolicyService(policy_store, index, hosts, policy_results, policy_source, bus)
    automations = PolicyAutomations(query_tasks, policies.book)
    policies.on_change = automations.policy_changed
    stream_quota = StreamQuota(settings.max_streams_per_user)
    services = Services(
        settings=settings,
        db=db,
        index=index,
        users=users,
        secrets=EnrollSecretService(db, invalidations),
        hosts=hosts,
        agent_config=AgentConfigService(db, settings, invalidations),
        result_logs=ResultLogService(index),
        wakeups=wakeups,
        distributed=distributed,
        subscriptions=hub,
        query_tasks=query_tasks,
        expiry=ExpirySweeper(
            index, settings.expiry_sweep_interval, may_run=lambda: bus.lease("expiry").held
        ),
        activities=ActivityService(index),
        saved_queries=SavedQueryService(index),
        campaigns=campaigns,
        labels=labels,
        login_limiter=login_limiter(bus, settings),
        enroll_limiter=enroll_limiter(settings, bus),
        teams=teams,
        app_config=app_config,
        stream_quota=stream_quota,
        stream_tokens=StreamTokenWatch(
            users, stream_quota, bus, settings.stream_token_check_interval
        ),
        retention=ChangeLogRetention(
            db,
            settings.change_retention,
            min(60.0, settings.change_retention / 10),
            may_run=lambda: bus.lease("retention").held,
        ),
        bus=bus,
        invalidations=invalidations,
        fanout=ChangeFanout(index, bus) if bus.clustered else None,
        policies=policies,
        policy_automations=automations,
    )
    instrument(services)
    return services


async def start_services(services: Services) -> None:
    """Migrate the store and start background work, in dependency order."""
    if services.db.is_sqlite:
        services.settings.data_dir.mkdir(parents=True, exist_ok=True)
    await services.db.migrate()
    await services.bus.start()
    await services.index.start()
    if services.fanout is not None:
        services.fanout.start()
    # Nodes of a cluster starting together on a new database seed it once.
    async with services.db.exclusive():
        await services.secrets.load()
        if services.settings.enroll_secret:
            await services.secrets.ensure(services.settings.enroll_secret)
        await services.users.ensure_admin(
            services.settings.admin_email, services.settings.admin_password
        )
        await services.agent_config.load()
        await services.app_config.load()
        await services.teams.load()
        await services.hosts.load()
        await services.labels.load()
    await services.policies.load()
    services.secrets.start()
    services.hosts.start()
    await services.campaigns.load()
    services.campaigns.start()
    services.subscriptions.start()
    await services.query_tasks.start()
    await services.policy_automations.start()
    services.expiry.start()
    services.retention.start()
    services.stream_tokens.start()
    await start_operations(services.ops, services.settings)


async def stop_services(services: Services) -> None:
    """Flush and stop background work, then close the store. A part that fails to stop is
    logged, and the others stop all the same (a shutdown must not end half way)."""

    async def policies() -> None:
        services.policies.stop()

    stops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("operations", lambda: stop_operations(services.ops)),
        ("stream tokens", services.stream_tokens.stop),
        ("campaigns", services.campaigns.stop),
        ("secrets", services.secrets.stop),
        ("hosts", services.hosts.stop),
        ("retention", services.retention.stop),
        ("expiry", services.expiry.stop),
        ("query tasks", services.query_tasks.stop),
        ("policy automations", services.policy_automations.stop),
        ("policies", policies),
        ("subscriptions", services.subscriptions.stop),
    ]
    if services.fanout is not None:
        stops.append(("fan-out", services.fanout.stop))
    stops += [("bus", services.bus.stop), ("database", services.db.dispose)]
    for name, stop in stops:
        try:
            await stop()
        except Exception:
            log.exception("stopping the %s failed; stopping the rest", name)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application for these settings (defaults from FLEETWATCH_* variables)."""
    settings = settings or Settings()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await start_services(services)
        tune_gc = getattr(app.state, "tune_gc", None)
        if tune_gc is not None:  # `fleetwatch serve`: what start-up built lives as long
            tune_gc()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await stop_services(services)

    app = FleetwatchApp(
        title="fleetwatch",
        version=__version__,
        default_response_class=JsonResponse,
        lifespan=lifespan,
        # fleetwatch has its own metrics (/metrics); FastAPI's OpenTelemetry hooks, unused,
        # looked up three environment variables on every request (5 % of a check-in).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.state.ready = False
    # Agents' POSTs skip the middleware and routing below (osquery/lean_app.py).
    app.lean = LeanAgentApp(app, services)
    install_error_handlers(app)
    # Innermost: user API bodies without a JSON Content-Type (curl -d) are read as JSON.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(
        RequestMiddleware, metrics=services.ops.metrics, max_body_bytes=settings.max_body_bytes
    )
    install_openapi(app)
    for router in (
        osquery_routes.router,
        osquery_routes.legacy_router,
        session.router,
        users.router,
        hosts.router,
        secrets.router,
        agent_config.router,
        app_config.router,
        live_queries.router,
        campaign_history_api.router,
        destinations_api.router,
        saved_queries.router,
        activities.router,
        labels_api.router,
        teams_api.router,
        policies.router,
        task_streams_api.router,
        scrape.router,
    ):
        app.include_router(router)
    # Query tasks are scoped per user (fleetwatch.live.scope); user documents are not
    # scoped to teams, so they need a global role.
    app.include_router(query_tasks_api.router)
    app.include_router(documents_api.router, dependencies=[Depends(global_user)])
    install_web(app)
    app.include_router(health.router)

    return app
