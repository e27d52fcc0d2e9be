"""Connects metrics, destinations (log forwarding, campaign results) and log redaction
(`fleetwatch.ops`) to the services.

`instrument` sets small callbacks on the services (each a no-op attribute until set) and hands
the scrape-time gauges what they observe, so neither the services nor `ops/` import the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fleetwatch.destinations import Follower, cursor_name
from fleetwatch.fleet.host_state import HostState
from fleetwatch.live.campaign_destinations import CampaignResults
from fleetwatch.ops.logs import REDACTOR
from fleetwatch.ops.metrics import GaugeCollector, StandingQueries
from fleetwatch.ops.operations import build_destinations
from fleetwatch.services import Services
from fleetwatch.storage.cursors import StreamCursors


class ObservedServices:
    """The services as the scrape-time gauges read them (`ops.metrics.Observed`)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.hub: StandingQueries = services.subscriptions

    def held_long_polls(self) -> int:
        return self.services.wakeups.waiting

    def host_statuses(self, now: float) -> Iterable[str]:
        hosts = self.services.hosts
        return (hosts.status(host, now) for host in hosts.all())

    def active_campaigns(self) -> int:
        return len(self.services.campaigns.list_active())

    def task_stats(self) -> Mapping[str, Any]:
        return self.services.query_tasks.stats()

    def last_seq(self) -> int:
        return self.services.index.last_seq

    def destination_queue_depths(self) -> Mapping[str, int]:
        return self.services.ops.destinations.queue_depths()


def instrument(services: Services) -> None:
    """Connect metrics and destinations to the services (call once, after building them)."""
    ops = services.ops
    metrics = ops.metrics
    settings = services.settings
    # one guard for every call to an address from outside the code (tests stub its resolver)
    guard = services.query_tasks.webhooks.guard
    destinations = ops.destinations = build_destinations(settings, guard, metrics.on_destination)

    def on_ingest(host: HostState, log_type: str, data: Sequence[Any], stored: int) -> None:
        metrics.on_log_ingest(log_type, len(data), stored)
        destinations.submit_logs(host.id, log_type, data)

    services.result_logs.on_ingest = on_ingest
    if destinations.forwards_logs():
        services.policy_automations.on_event = lambda event: destinations.submit_logs(
            int(event["host"]["id"]), "policy", [event]
        )
    services.campaigns.destination_names = services.saved_queries.destination_names = (
        destinations.names
    )
    # Campaign rows: each destination a campaign may name follows the change log from its
    # own durable cursor, delivered by the one node holding its lease
    # (fleetwatch.destinations.follower). Log forwarding's lanes follow nothing.
    feed, cursors = CampaignResults(services.index), StreamCursors(services.db)
    destinations.follow(
        [
            Follower(destinations.lanes[name], feed, cursors, services.bus.lease(cursor_name(name)))
            for name in destinations.names()
        ]
    )
    services.distributed.on_write = metrics.on_distributed_write
    services.query_tasks.webhooks.on_delivery = metrics.on_webhook
    services.subscriptions.on_match = metrics.on_match
    metrics.registry.register(GaugeCollector(ObservedServices(services)))
    for secret in (settings.enroll_secret, settings.admin_password, settings.metrics_token):
        REDACTOR.add(secret)
    for url in (settings.database_url, settings.redis_url, settings.log_forward_url):
        REDACTOR.add_url(url)
    for destination in settings.destinations.values():
        REDACTOR.add(destination.token)
        REDACTOR.add_url(destination.url)
