"""Query task routes: `/core/local-query-tasks` and `/core/query-tasks`, pages, webhooks.

Both factories behave the same on one node (Xenon's distinction is replication). The
streams of a task (WebSocket and SSE) are in `task_streams.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.api.responses import JsonResponse
from fleetwatch.query.tasks import FACTORIES, TaskError, decode_json

router = APIRouter(tags=["query tasks"])

#: Largest accepted QueryTask body.
MAX_TASK_BODY = 1024 * 1024


def api_error(exc: TaskError) -> ApiError:
    return ApiError(exc.status, exc.message)


async def read_json(request: Request) -> object:
    """The request body as JSON (400 if malformed, 413 if too large)."""
    body = await request.body()
    if len(body) > MAX_TASK_BODY:
        raise ApiError(413, f"body: larger than {MAX_TASK_BODY} bytes")
    try:
        return decode_json(body)
    except TaskError as exc:
        raise api_error(exc) from None


async def _call(work: Awaitable[Any]) -> Any:
    try:
        return await work
    except TaskError as exc:
        raise api_error(exc) from None


def _register(factory: str, base: str) -> None:
    """The routes of one task factory."""

    async def create_task(
        request: Request, user: CurrentUser, services: ServicesDep
    ) -> JsonResponse:
        """Create a query task: 200 with results if `taskInfo.isDirect`, otherwise 202."""
        raw = await read_json(request)
        status, body = await _call(services.query_tasks.create(factory, raw, user.id))
        return JsonResponse(body, status_code=status)

    async def list_tasks(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
        """The links of this factory's tasks."""
        links = services.query_tasks.links(factory)
        return {"documentLinks": links, "documentCount": len(links)}

    async def get_task(task_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
        """The task's state; a continuous COUNT task shows its running counters."""
        try:
            return services.query_tasks.get(f"{base}/{task_id}").to_json()
        except TaskError as exc:
            raise api_error(exc) from None

    async def patch_task(
        task_id: str, request: Request, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """`taskInfo.stage` CANCELLED stops it; `documentExpirationTimeMicros` moves expiry."""
        raw = await read_json(request)
        result: dict[str, Any] = await _call(services.query_tasks.patch(f"{base}/{task_id}", raw))
        return result

    async def delete_task(task_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
        """Stop and remove the task; answers with its last state."""
        result: dict[str, Any] = await _call(services.query_tasks.delete(f"{base}/{task_id}"))
        return result

    async def add_subscription(
        task_id: str, request: Request, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """`{"reference": URL, "replayState": bool}`: PATCH each notification to URL."""
        link = f"{base}/{task_id}"
        raw = await read_json(request)
        row = await _call(services.query_tasks.add_webhook(link, raw))
        return dict(row.to_json(f"{link}/subscriptions"))

    async def list_subscriptions(
        task_id: str, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """The webhook subscriptions, with delivery counts and any failure reason."""
        link = f"{base}/{task_id}"
        try:
            services.query_tasks.get(link)
        except TaskError as exc:
            raise api_error(exc) from None
        rows = services.query_tasks.webhooks.for_task(link)
        return {"subscribers": [r.to_json(f"{link}/subscriptions") for r in rows]}

    async def delete_subscription(
        task_id: str, subscription_id: int, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """Unsubscribe one webhook."""
        link = f"{base}/{task_id}"
        row = services.query_tasks.webhooks.get(subscription_id)
        if row is None or row.task_link != link:
            raise ApiError(404, f"no subscription {subscription_id} on {link}")
        await services.query_tasks.webhooks.remove(subscription_id)
        return dict(row.to_json(f"{link}/subscriptions"))

    async def unsubscribe_reference(
        task_id: str, request: Request, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """Xenon's unsubscribe: DELETE .../subscriptions with `{"reference": URL}`."""
        link = f"{base}/{task_id}"
        raw = await read_json(request)
        reference = raw.get("reference") if isinstance(raw, dict) else None
        if not isinstance(reference, str):
            raise ApiError(400, "reference: expected the callback URL to unsubscribe")
        rows = [r for r in services.query_tasks.webhooks.for_task(link) if r.reference == reference]
        if not rows:
            raise ApiError(404, f"no subscription of {reference} on {link}")
        for row in rows:
            await services.query_tasks.webhooks.remove(row.id)
        return {"removed": [r.id for r in rows]}

    routes: list[tuple[str, Callable[..., Any], list[str], int]] = [
        ("", create_task, ["POST"], 202),
        ("", list_tasks, ["GET"], 200),
        ("/{task_id}", get_task, ["GET"], 200),
        ("/{task_id}", patch_task, ["PATCH"], 200),
        ("/{task_id}", delete_task, ["DELETE"], 200),
        ("/{task_id}/subscriptions", add_subscription, ["POST"], 200),
        ("/{task_id}/subscriptions", list_subscriptions, ["GET"], 200),
        ("/{task_id}/subscriptions", unsubscribe_reference, ["DELETE"], 200),
        ("/{task_id}/subscriptions/{subscription_id}", delete_subscription, ["DELETE"], 200),
    ]
    for suffix, endpoint, methods, status in routes:
        router.add_api_route(
            base + suffix,
            endpoint,
            methods=methods,
            status_code=status,
            name=f"{factory}:{endpoint.__name__}",
        )


for _factory, _base in FACTORIES.items():
    _register(_factory, _base)


@router.get("/core/query-page/{page_id}")
async def get_page(page_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """One page of a task's results (`results.nextPageLink` / `prevPageLink`)."""
    result: dict[str, Any] = await _call(services.query_tasks.page(page_id))
    return result


@router.get("/core/document-index/stats")
async def index_stats(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Gauges: tasks, active query filters (Xenon's activeQueryFilterCount), subscribers."""
    return services.query_tasks.stats()
