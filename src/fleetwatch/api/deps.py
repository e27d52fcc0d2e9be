"""Request-scoped access to the services (typed; no string lookups)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fleetwatch.services import Services

#: Highest `page` a list accepts: beyond it no list has rows, and an unbounded integer would
#: be echoed back past what JSON numbers (and orjson) can carry.
MAX_PAGE = 1_000_000_000


def services_of(conn: HTTPConnection) -> Services:
    """The app's Services (works for HTTP requests and WebSockets)."""
    services: Services = conn.app.state.services
    return services


async def get_services(conn: HTTPConnection) -> Services:
    """The dependency form of `services_of`. Async on purpose: FastAPI runs a sync
    dependency in its thread pool, a thread hop per request."""
    return services_of(conn)


#: A route parameter `services: ServicesDep` receives the app's Services.
ServicesDep = Annotated[Services, Depends(get_services)]
