"""Query task routes: `/core/local-query-tasks` and `/core/query-tasks`, pages, webhooks.

Both factories behave the same on one node (Xenon's distinction is replication). The
streams of a task (WebSocket and SSE) are in `task_streams.py`.

A task is private to the user who created it, like a live query campaign: only its owner
and global admins see, change, cancel, delete, stream and subscribe to it (and read its
result pages); anyone else is answered 404, as if it did not exist, so task ids do not leak.
Every user but a global admin has a scope ANDed onto their tasks (`fleetwatch.live.scope`:
other users' campaigns and their results stay out; a team user sees only their teams).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request

from fleetwatch.api.auth import CurrentUser, global_user
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.users import User
from fleetwatch.live.scope import document_scope
from fleetwatch.query.task_requests import FACTORIES, TaskError, decode_json
from fleetwatch.responses import JsonResponse

router = APIRouter(tags=["query tasks"])

T = TypeVar("T")

#: Largest accepted QueryTask body.
MAX_TASK_BODY = 1024 * 1024


def api_error(exc: TaskError) -> ApiError:
    return ApiError(exc.status, exc.message)


def owner_filter(user: User) -> int | None:
    """Whose tasks the user may see: None (every task) for a global admin, else their own."""
    return None if Access(user).global_at_least("admin") else user.id


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


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (its query then stops in
    the database: `fleetwatch.storage.interruptible`). Call after reading the body."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait([task, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    if task.cancelled():
        # Nobody reads this answer; it is for the access log.
        raise ApiError(499, "the client disconnected before the query finished; it was stopped")
    return task.result()


async def _disconnect(request: Request) -> None:
    """Return when the client has gone (the body must have been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _register(factory: str, base: str) -> None:
    """The routes of one task factory."""

    async def create_task(
        request: Request, user: CurrentUser, services: ServicesDep
    ) -> JsonResponse:
        """Create a query task: 200 with results if `taskInfo.isDirect`, otherwise 202."""
        raw = await read_json(request)
        scope = document_scope(Access(user))
        work = _call(
            services.query_tasks.create(
                factory, raw, user.id, scope, sees_all=owner_filter(user) is None
            )
        )
        status, body = await until_disconnected(request, work)
        return JsonResponse(body, status_code=status)

    async def list_tasks(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
        """The links of this factory's tasks (the user's own; every task for an admin)."""
        links = services.query_tasks.links(factory, owner_filter(user))
        return {"documentLinks": links, "documentCount": len(links)}

    def visible(user: User, services: ServicesDep, task_id: str) -> str:
        """The task's link; 404 when it does not exist or the user may not see it."""
        link = f"{base}/{task_id}"
        try:
            services.query_tasks.get(link, owner_filter(user))
        except TaskError as exc:
            raise api_error(exc) from None
        return link

    async def get_task(task_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
        """The task's state; a continuous COUNT task shows its running counters."""
        return services.query_tasks.get(visible(user, services, task_id)).to_json()

    async def patch_task(
        task_id: str, request: Request, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """`taskInfo.stage` CANCELLED stops it; `documentExpirationTimeMicros` moves expiry."""
        link = visible(user, services, task_id)
        raw = await read_json(request)
        result: dict[str, Any] = await _call(services.query_tasks.patch(link, raw))
        return result

    async def delete_task(task_id: str, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
        """Stop and remove the task; answers with its last state."""
        link = visible(user, services, task_id)
        result: dict[str, Any] = await _call(services.query_tasks.delete(link))
        return result

    async def add_subscription(
        task_id: str, request: Request, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """`{"reference": URL, "replayState": bool}`: PATCH each notification to URL."""
        link = visible(user, services, task_id)
        raw = await read_json(request)
        row = await _call(services.query_tasks.add_webhook(link, raw))
        return dict(row.to_json(f"{link}/subscriptions"))

    async def list_subscriptions(
        task_id: str, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """The webhook subscriptions, with delivery counts and any failure reason."""
        link = visible(user, services, task_id)
        rows = services.query_tasks.webhooks.for_task(link)
        return {"subscribers": [r.to_json(f"{link}/subscriptions") for r in rows]}

    async def delete_subscription(
        task_id: str, subscription_id: int, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """Unsubscribe one webhook."""
        link = visible(user, services, task_id)
        row = services.query_tasks.webhooks.get(subscription_id)
        if row is None or row.task_link != link:
            raise ApiError(404, f"no subscription {subscription_id} on {link}")
        await services.query_tasks.remove_webhook(subscription_id)
        return dict(row.to_json(f"{link}/subscriptions"))

    async def unsubscribe_reference(
        task_id: str, request: Request, user: CurrentUser, services: ServicesDep
    ) -> dict[str, Any]:
        """Xenon's unsubscribe: DELETE .../subscriptions with `{"reference": URL}`."""
        link = visible(user, services, task_id)
        raw = await read_json(request)
        reference = raw.get("reference") if isinstance(raw, dict) else None
        if not isinstance(reference, str):
            raise ApiError(400, "reference: expected the callback URL to unsubscribe")
        rows = [r for r in services.query_tasks.webhooks.for_task(link) if r.reference == reference]
        if not rows:
            raise ApiError(404, f"no subscription of {reference} on {link}")
        for row in rows:
            await services.query_tasks.remove_webhook(row.id)
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
    owner = owner_filter(user)
    if owner is not None and await services.query_tasks.page_owner(page_id) != owner:
        raise ApiError(404, f"no query page {page_id}: it expired with its task or never existed")
    result: dict[str, Any] = await _call(services.query_tasks.page(page_id))
    return result


@router.get("/core/document-index/stats")
async def index_stats(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Gauges: tasks, active query filters (Xenon's activeQueryFilterCount), subscribers."""
    await global_user(user)  # counts over every user's tasks
    return services.query_tasks.stats()
