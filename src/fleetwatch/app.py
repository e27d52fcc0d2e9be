"""`create_app(settings)`: builds the services and mounts the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from fleetwatch import __version__
from fleetwatch.api import (
    activities,
    agent_config,
    app_config,
    health,
    hosts,
    live_queries,
    saved_queries,
    secrets,
    session,
    users,
)
from fleetwatch.api import documents as documents_api
from fleetwatch.api import labels as labels_api
from fleetwatch.api import query_tasks as query_tasks_api
from fleetwatch.api import task_streams as task_streams_api
from fleetwatch.api import teams as teams_api
from fleetwatch.api.auth import global_user
from fleetwatch.api.errors import install_error_handlers
from fleetwatch.api.responses import JsonResponse
from fleetwatch.bus.bus import Bus, Invalidations, LocalBus
from fleetwatch.bus.change_fanout import ChangeFanout
from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.fleet.activities import ActivityService
from fleetwatch.fleet.agent_config import AgentConfigService
from fleetwatch.fleet.app_config import AppConfigService
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.labels import LabelService
from fleetwatch.fleet.login_limits import LoginLimiter, SharedLoginLimiter
from fleetwatch.fleet.result_logs import ResultLogService
from fleetwatch.fleet.secrets import EnrollSecretService
from fleetwatch.fleet.teams import TeamService
from fleetwatch.fleet.users import UserService
from fleetwatch.index import DocumentIndex
from fleetwatch.index.expiry import ExpirySweeper
from fleetwatch.index.retention import ChangeLogRetention
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.live.saved_queries import SavedQueryService
from fleetwatch.ops import scrape
from fleetwatch.ops.middleware import RequestMiddleware
from fleetwatch.ops.openapi import install_openapi
from fleetwatch.ops.operations import instrument, start_operations, stop_operations
from fleetwatch.osquery import routes as osquery_routes
from fleetwatch.osquery.detail_queries import DetailQuerySource
from fleetwatch.osquery.distributed import DistributedService
from fleetwatch.query.subscriptions import SubscriptionHub
from fleetwatch.query.tasks import QueryTaskService
from fleetwatch.services import Services
from fleetwatch.storage import Database
from fleetwatch.web.routes import install_web


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


def login_limiter(bus: Bus) -> LoginLimiter:
    """Login buckets shared by the cluster (in Redis), or this node's own."""
    from fleetwatch.bus.redis_bus import RedisBus

    if isinstance(bus, RedisBus):
        return SharedLoginLimiter(bus.redis)
    return LoginLimiter()


def build_services(settings: Settings) -> Services:
    """Construct (but do not start) every service for these settings."""
    db = Database(settings.effective_database_url())
    index = DocumentIndex(db)
    bus = build_bus(settings, db)
    invalidations = Invalidations(bus)
    hosts = HostService(db, index, settings, bus)
    wakeups = HostWakeups()
    distributed = DistributedService(settings, wakeups)
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
    services = Services(
        settings=settings,
        db=db,
        index=index,
        users=UserService(db),
        secrets=EnrollSecretService(db, invalidations),
        hosts=hosts,
        agent_config=AgentConfigService(db, settings, invalidations),
        result_logs=ResultLogService(index),
        wakeups=wakeups,
        distributed=distributed,
        subscriptions=hub,
        query_tasks=QueryTaskService(
            index, hub, settings, invalidations, webhook_lease=bus.lease("webhooks")
        ),
        expiry=ExpirySweeper(
            index, settings.expiry_sweep_interval, may_run=lambda: bus.lease("expiry").held
        ),
        activities=ActivityService(index),
        saved_queries=SavedQueryService(index),
        campaigns=campaigns,
        labels=labels,
        login_limiter=login_limiter(bus),
        teams=teams,
        app_config=app_config,
        retention=ChangeLogRetention(
            db,
            settings.change_retention,
            min(60.0, settings.change_retention / 10),
            may_run=lambda: bus.lease("retention").held,
        ),
        bus=bus,
        invalidations=invalidations,
        fanout=ChangeFanout(index, bus) if bus.clustered else None,
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
    services.hosts.start()
    await services.campaigns.load()
    services.campaigns.start()
    services.subscriptions.start()
    await services.query_tasks.start()
    services.expiry.start()
    services.retention.start()
    await start_operations(services)


async def stop_services(services: Services) -> None:
    """Flush and stop background work, then close the store."""
    await stop_operations(services)
    await services.campaigns.stop()
    await services.hosts.stop()
    await services.retention.stop()
    await services.expiry.stop()
    await services.query_tasks.stop()
    await services.subscriptions.stop()
    if services.fanout is not None:
        await services.fanout.stop()
    await services.bus.stop()
    await services.db.dispose()


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

    app = FastAPI(
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
    install_error_handlers(app)
    # The request middleware, added next, wraps this one: see AgentFastPath.
    app.add_middleware(osquery_routes.AgentFastPath)
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
        saved_queries.router,
        activities.router,
        labels_api.router,
        teams_api.router,
        task_streams_api.router,
        scrape.router,
    ):
        app.include_router(router)
    # Query tasks are scoped per user (fleetwatch.fleet.scope); user documents are not
    # scoped to teams, so they need a global role.
    app.include_router(query_tasks_api.router)
    app.include_router(documents_api.router, dependencies=[Depends(global_user)])
    install_web(app)
    app.include_router(health.router)

    return app
