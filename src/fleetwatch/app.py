"""`create_app(settings)`: builds the services and mounts the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fleetwatch import __version__
from fleetwatch.api import agent_config, hosts, secrets, session, users
from fleetwatch.api.errors import install_error_handlers
from fleetwatch.api.responses import JsonResponse
from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.config import Settings
from fleetwatch.fleet.agent_config import AgentConfigService
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.result_logs import ResultLogService
from fleetwatch.fleet.secrets import EnrollSecretService
from fleetwatch.fleet.users import UserService
from fleetwatch.index import DocumentIndex
from fleetwatch.osquery import routes as osquery_routes
from fleetwatch.osquery.detail_queries import DetailQuerySource
from fleetwatch.osquery.distributed import DistributedService
from fleetwatch.services import Services
from fleetwatch.storage import Database


def build_services(settings: Settings) -> Services:
    """Construct (but do not start) every service for these settings."""
    db = Database(settings.effective_database_url())
    index = DocumentIndex(db)
    hosts = HostService(db, index, settings)
    wakeups = HostWakeups()
    distributed = DistributedService(settings, wakeups)
    distributed.register(DetailQuerySource(hosts))
    return Services(
        settings=settings,
        db=db,
        index=index,
        users=UserService(db),
        secrets=EnrollSecretService(db),
        hosts=hosts,
        agent_config=AgentConfigService(db, settings),
        result_logs=ResultLogService(index),
        wakeups=wakeups,
        distributed=distributed,
    )


async def start_services(services: Services) -> None:
    """Migrate the store and start background work, in dependency order."""
    if services.db.is_sqlite:
        services.settings.data_dir.mkdir(parents=True, exist_ok=True)
    await services.db.migrate()
    await services.index.start()
    await services.secrets.load()
    if services.settings.enroll_secret:
        await services.secrets.ensure(services.settings.enroll_secret)
    await services.users.ensure_admin(
        services.settings.admin_email, services.settings.admin_password
    )
    await services.agent_config.load()
    await services.hosts.load()
    services.hosts.start()


async def stop_services(services: Services) -> None:
    """Flush and stop background work, then close the store."""
    await services.hosts.stop()
    await services.db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application for these settings (defaults from FLEETWATCH_* variables)."""
    settings = settings or Settings()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await start_services(services)
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
    )
    app.state.services = services
    app.state.ready = False
    install_error_handlers(app)
    for router in (
        osquery_routes.router,
        osquery_routes.legacy_router,
        session.router,
        users.router,
        hosts.router,
        secrets.router,
        agent_config.router,
    ):
        app.include_router(router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JsonResponse:
        """200 once the server is ready; 503 while it starts or stops."""
        if not app.state.ready:
            return JsonResponse({"status": "starting"}, status_code=503)
        return JsonResponse({"status": "ok", "version": __version__})

    return app
