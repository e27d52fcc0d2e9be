"""`GET /healthz`: is this node ready, and what is degraded.

Status codes are chosen for load balancers. 503 means "send traffic to another node": only
while this node starts or stops. A shared dependency that is down (PostgreSQL, Redis) is
down for every node, so it answers 200 with `"status": "degraded"` and the reasons: a load
balancer that took every node out would answer agents with its own HTML error page, while a
node keeps answering them with osquery-readable JSON and recovers on its own. Monitoring that
wants a failure for "degraded" asks `/healthz?strict=true` (503 when degraded).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request

from fleetwatch import __version__
from fleetwatch.index import DocumentIndex
from fleetwatch.responses import JsonResponse
from fleetwatch.services import Services
from fleetwatch.storage import Database

#: Seconds a database probe result is reused (load balancers probe every node often).
PROBE_TTL = 1.0
#: Seconds a database probe may take before the database counts as unreachable.
PROBE_TIMEOUT = 1.0
#: Seconds a committed change may wait for delivery to this node's listeners before the
#: change feed counts as lagging.
FEED_LAG_LIMIT = 5.0

router = APIRouter(tags=["operations"])


class HealthProbe:
    """Probes the database (cached for `PROBE_TTL`) and measures the change feed's lag."""

    def __init__(self, db: Database, index: DocumentIndex) -> None:
        self.db = db
        self.index = index
        self._checked_at = -PROBE_TTL
        self._error: str | None = None
        self._last_seq = 0
        self._lock = asyncio.Lock()
        #: (when first seen, sequence) of the oldest committed change not yet delivered.
        self._waiting: tuple[float, int] | None = None

    async def database(self) -> str | None:
        """None when the database answers, else why not (one probe per `PROBE_TTL`)."""
        async with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= PROBE_TTL:
                try:
                    self._last_seq = await asyncio.wait_for(self._ping(), PROBE_TIMEOUT)
                    self._error = None
                except TimeoutError:
                    self._error = f"no answer within {PROBE_TIMEOUT:g} s"
                except Exception as exc:  # any driver error means unreachable here
                    self._error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self._checked_at = time.monotonic()
            return self._error

    @property
    def last_seq(self) -> int:
        """The end of the change log at the last successful probe."""
        return self._last_seq

    async def _ping(self) -> int:
        # The end of the change log: proves the database answers and measures the feed.
        return await self.index.read_last_seq()

    def feed_lag(self) -> float:
        """Seconds the oldest committed, undelivered change has waited (0 if none)."""
        delivered = self.index.delivered_seq
        now = time.monotonic()
        if self._waiting is not None and delivered >= self._waiting[1]:
            self._waiting = None
        if self._waiting is None and self._last_seq > delivered:
            self._waiting = (now, self._last_seq)
        return 0.0 if self._waiting is None else now - self._waiting[0]


async def report(services: Services, probe: HealthProbe) -> dict[str, Any]:
    """The health body: `status` ok or degraded, `degraded` reasons, and the details."""
    degraded: list[str] = []
    db_error = await probe.database()
    database: dict[str, Any] = {"status": "ok" if db_error is None else "unreachable"}
    if db_error is not None:
        database["error"] = db_error
        degraded.append("database unreachable")
    bus = dict(services.bus.health())
    if bus.get("redis") == "unreachable":
        degraded.append("redis unreachable")
    lag = probe.feed_lag() if db_error is None else 0.0
    feed = {
        "last_seq": max(probe.last_seq, services.index.last_seq),
        "delivered_seq": services.index.delivered_seq,
        "lag_seconds": round(lag, 3),
    }
    if lag > FEED_LAG_LIMIT:
        degraded.append("change feed lagging")
    return {
        "status": "degraded" if degraded else "ok",
        "version": __version__,
        "degraded": degraded,
        "database": database,
        "bus": bus,
        "changes": feed,
    }


@router.get("/healthz")
async def healthz(request: Request, strict: bool = False) -> JsonResponse:
    """200 when ready (`status` ok, or degraded with the reasons); 503 while the node starts
    or stops, and with `?strict=true` also when degraded."""
    app = request.app
    if not app.state.ready:
        return JsonResponse({"status": "starting", "version": __version__}, status_code=503)
    services: Services = app.state.services
    probe: HealthProbe | None = getattr(app.state, "health_probe", None)
    if probe is None:
        probe = app.state.health_probe = HealthProbe(services.db, services.index)
    body = await report(services, probe)
    degraded = body["status"] != "ok"
    return JsonResponse(body, status_code=503 if strict and degraded else 200)
