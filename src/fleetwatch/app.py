"""`create_app(settings)`: builds the services and mounts the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fleetwatch import __version__
from fleetwatch.api.errors import install_error_handlers
from fleetwatch.api.responses import JsonResponse
from fleetwatch.config import Settings
from fleetwatch.index import DocumentIndex
from fleetwatch.services import Services
from fleetwatch.storage import Database


def build_services(settings: Settings) -> Services:
    """Construct (but do not start) every service for these settings."""
    db = Database(settings.effective_database_url())
    index = DocumentIndex(db)
    return Services(settings=settings, db=db, index=index)


async def start_services(services: Services) -> None:
    """Migrate the store and start background work, in dependency order."""
    if services.db.is_sqlite:
        services.settings.data_dir.mkdir(parents=True, exist_ok=True)
    await services.db.migrate()
    await services.index.start()


async def stop_services(services: Services) -> None:
    """Flush and stop background work, then close the store."""
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

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JsonResponse:
        """200 once the server is ready; 503 while it starts or stops."""
        if not app.state.ready:
            return JsonResponse({"status": "starting"}, status_code=503)
        return JsonResponse({"status": "ok", "version": __version__})

    return app
