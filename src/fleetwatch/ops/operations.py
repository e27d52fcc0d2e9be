"""The operational parts of one app (metrics, log forwarding, the metrics port) and the
hooks that connect them to the services.

`instrument` sets small callbacks on the services (each a no-op attribute until set), so
the services themselves import nothing of metrics or forwarding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleetwatch.forwarding import Destination, FileDestination, HttpDestination, LogForwarder
from fleetwatch.ops.logs import REDACTOR
from fleetwatch.ops.metrics import Metrics, ServicesCollector
from fleetwatch.ops.metrics_server import MetricsServer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fleetwatch.config import Settings
    from fleetwatch.fleet.hosts import HostState
    from fleetwatch.services import Services


@dataclass
class Operations:
    """Metrics registry, log forwarder and metrics listener of one app."""

    metrics: Metrics = field(default_factory=Metrics)
    forwarder: LogForwarder | None = None
    metrics_server: MetricsServer | None = None


def build_forwarder(settings: Settings, metrics: Metrics) -> LogForwarder | None:
    """The log forwarder for the configured destinations, or None when there are none."""
    destinations: list[Destination] = []
    if settings.log_forward_dir is not None:
        destinations.append(
            FileDestination(
                settings.log_forward_dir,
                settings.log_forward_max_bytes,
                settings.log_forward_backups,
            )
        )
    if settings.log_forward_url:
        destinations.append(HttpDestination(settings.log_forward_url, settings.log_forward_timeout))
    if not destinations:
        return None
    return LogForwarder(destinations, settings.log_forward_queue_limit, metrics)


def instrument(services: Services) -> None:
    """Connect metrics and forwarding to the services (call once, after building them)."""
    ops = services.ops
    metrics = ops.metrics
    settings = services.settings
    ops.forwarder = build_forwarder(settings, metrics)
    forwarder = ops.forwarder

    def on_ingest(host: HostState, log_type: str, data: Sequence[Any], stored: int) -> None:
        metrics.on_log_ingest(log_type, len(data), stored)
        if forwarder is not None:
            forwarder.submit(host.id, log_type, data)

    services.result_logs.on_ingest = on_ingest
    services.distributed.on_write = metrics.on_distributed_write
    services.query_tasks.webhooks.on_delivery = metrics.on_webhook
    services.subscriptions.on_match = metrics.on_match
    metrics.registry.register(ServicesCollector(services))
    for secret in (settings.enroll_secret, settings.admin_password, settings.metrics_token):
        REDACTOR.add(secret)
    for url in (settings.database_url, settings.redis_url, settings.log_forward_url):
        REDACTOR.add_url(url)


async def start_operations(services: Services) -> None:
    """Start forwarding workers and the metrics listener (if configured)."""
    ops = services.ops
    if ops.forwarder is not None:
        ops.forwarder.start()
    settings = services.settings
    if settings.metrics_port is not None:
        ops.metrics_server = MetricsServer(
            ops.metrics, settings.metrics_host or settings.host, settings.metrics_port
        )
        await ops.metrics_server.start()


async def stop_operations(services: Services) -> None:
    """Stop the metrics listener; deliver what is queued for forwarding, then stop."""
    ops = services.ops
    if ops.metrics_server is not None:
        await ops.metrics_server.stop()
        ops.metrics_server = None
    if ops.forwarder is not None:
        await ops.forwarder.stop()
