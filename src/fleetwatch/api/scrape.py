"""`/metrics` on the main port: for the metrics token or an admin.

On the main port, `/metrics` needs `Authorization: Bearer <token>` with either the
configured `--metrics-token` (for a Prometheus server: no user account) or an admin's token.
With `--metrics-port`, the same text is also served without authentication on its own
listener (see `metrics_server`).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from fleetwatch.api.auth import bearer_token, require_admin, resolve_token
from fleetwatch.api.errors import ApiError
from fleetwatch.ops.metrics import CONTENT_TYPE
from fleetwatch.services import Services

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format): the metrics token or an admin's token."""
    services: Services = request.app.state.services
    token = bearer_token(request)
    expected = services.settings.metrics_token
    if not (token and expected and hmac.compare_digest(token.encode(), expected.encode())):
        user = await resolve_token(services, token)
        try:
            require_admin(user)
        except ApiError as exc:
            raise ApiError(
                403, "reading /metrics needs an admin token or the metrics token"
            ) from exc
    return Response(services.ops.metrics.render(), media_type=CONTENT_TYPE)
