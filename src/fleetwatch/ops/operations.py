"""The operational parts of one app (metrics, destinations, the metrics port).

`fleetwatch.instrument` connects them to the services; this package imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from fleetwatch.destinations import (
    BulkSink,
    Destinations,
    DestinationSettings,
    FileSink,
    HecSink,
    HttpSink,
    Lane,
    LogBatchSink,
    OnOutcome,
    Sink,
)
from fleetwatch.destinations.settings import LOG_TYPES
from fleetwatch.ops.metrics import Metrics
from fleetwatch.ops.metrics_server import MetricsServer
from fleetwatch.outbound import OutboundGuard

if TYPE_CHECKING:
    from fleetwatch.config import Settings

#: File name per log type in log_forward_dir, as Fleet's osquery_result_log_file / ..._status_.
FILE_NAMES = {
    "result": "osquery_result.log",
    "status": "osquery_status.log",
    "policy": "fleet_policy_events.log",  # policies' failing/passing events
}
#: Connections one HTTP destination keeps.
CONNECTION_LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=2)


@dataclass
class Operations:
    """Metrics registry, destinations and metrics listener of one app."""

    metrics: Metrics = field(default_factory=Metrics)
    destinations: Destinations = field(default_factory=Destinations)
    metrics_server: MetricsServer | None = None


def build_destinations(
    settings: Settings, guard: OutboundGuard, on_outcome: OnOutcome | None = None
) -> Destinations:
    """The named destinations of the settings, and log forwarding's as two more
    (`log_forward_dir`, `log_forward_url`: osquery logs only, no campaign may name them):
    one mechanism (fleetwatch.destinations)."""
    lanes = [
        named_lane(name, config, guard, on_outcome)
        for name, config in sorted(settings.destinations.items())
    ]
    if settings.log_forward_dir is not None:
        directory = settings.log_forward_dir
        lanes.append(
            Lane(
                "log_forward_dir",
                FileSink(
                    lambda source: directory / FILE_NAMES[source],
                    settings.log_forward_max_bytes,
                    settings.log_forward_backups,
                ),
                batch_size=1000,
                interval=0.05,
                queue_limit=settings.log_forward_queue_limit,
                description={"type": "file", "path": str(directory)},
                log_types=frozenset(LOG_TYPES),
                campaign_rows=False,
                on_outcome=on_outcome,
            )
        )
    if settings.log_forward_url:
        client = guard.client(settings.log_forward_timeout, CONNECTION_LIMITS)
        lanes.append(
            Lane(
                "log_forward_url",
                LogBatchSink(settings.log_forward_url, client),
                batch_size=1000,
                interval=0.05,
                queue_limit=settings.log_forward_queue_limit,
                description={"type": "http", "url": shown_url(settings.log_forward_url)},
                log_types=frozenset(LOG_TYPES),
                campaign_rows=False,
                on_outcome=on_outcome,
            )
        )
    return Destinations(lanes)


def named_lane(
    name: str, config: DestinationSettings, guard: OutboundGuard, on_outcome: OnOutcome | None
) -> Lane:
    """The lane of a `[destinations.NAME]` table."""
    sink: Sink
    description: dict[str, object] = {"type": config.type}
    if config.type == "file":
        assert config.path is not None  # checked by DestinationSettings
        path = config.path
        sink = FileSink(lambda _source: path, config.max_bytes, config.backups)
        description["path"] = str(path)
    else:
        assert config.url is not None
        client = guard.client(config.timeout, CONNECTION_LIMITS)
        if config.type == "splunk_hec":
            sink = HecSink(config.url, client, config.token, config.index)
        elif config.type == "elasticsearch":
            sink = BulkSink(config.url, client, config.token, config.index or "")
        else:
            sink = HttpSink(config.url, client, config.token)
        description["url"] = shown_url(config.url)
    description.update(index=config.index, batch_size=config.batch_size, interval=config.interval)
    return Lane(
        name,
        sink,
        batch_size=config.batch_size,
        interval=config.interval,
        queue_limit=config.queue_limit,
        retention=config.retention,
        retry_max=config.retry_max,
        description=description,
        log_types=frozenset(config.osquery_logs),
        on_outcome=on_outcome,
    )


def shown_url(url: str) -> str:
    """A URL as it may be shown: no user or password, no query string (it may hold a key)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "(not a valid URL)"
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))


async def start_operations(ops: Operations, settings: Settings) -> None:
    """Start the destinations' workers and the metrics listener (if configured)."""
    ops.destinations.start()
    if settings.metrics_port is not None:
        ops.metrics_server = MetricsServer(
            ops.metrics, settings.metrics_host or settings.host, settings.metrics_port
        )
        await ops.metrics_server.start()


async def stop_operations(ops: Operations) -> None:
    """Stop the metrics listener; deliver what is queued for the destinations, then stop
    (whether or not the listener stopped cleanly)."""
    try:
        if ops.metrics_server is not None:
            await ops.metrics_server.stop()
            ops.metrics_server = None
    finally:
        await ops.destinations.stop()
