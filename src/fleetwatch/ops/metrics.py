"""Prometheus metrics: one registry per app, so several servers in one process never clash.

Counters are bumped by small hooks where things happen (a request ends, a webhook is
delivered, a log batch is stored). Everything that can be read off the services at scrape
time (held long-polls, active campaigns, standing tasks, subscribers and their queues, the
change-log sequence) is a callback in `ServicesCollector`, so the hot paths keep no extra
bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from fleetwatch.osquery.distributed import DistributedResult
    from fleetwatch.services import Services

# `*_created` series double the output and tell nothing the process start time does not.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Agent endpoint paths (both the versioned and Fleet's unversioned form) -> endpoint label.
AGENT_ENDPOINTS: dict[str, str] = {}
for _prefix in ("/api/v1/osquery", "/api/osquery"):
    for _name in ("enroll", "config", "log", "distributed/read", "distributed/write"):
        AGENT_ENDPOINTS[f"{_prefix}/{_name}"] = _name.replace("/", "_")

#: Request latency buckets (seconds): check-ins take about a millisecond, long-polls up to 14 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15)
#: Matching one change against the standing queries: microseconds to milliseconds.
MATCH_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)


def agent_outcome(status: int) -> str:
    """The outcome label of an agent reply by its status (osquery ignores status codes,
    but the server sets them: 401 is node_invalid, 413 a body over the limit)."""
    if status < 400:
        return "ok"
    if status == 401:
        return "node_invalid"
    if status == 413:
        return "too_large"
    if status < 500:
        return "refused"
    return "error"


class Metrics:
    """The metric objects of one app, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.agent_requests = Counter(
            "fleetwatch_agent_requests",
            "osquery agent API requests by endpoint and outcome "
            "(ok, node_invalid, refused, too_large, error).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.http_latency = Histogram(
            "fleetwatch_http_request_duration_seconds",
            "Time from a request's arrival to its response headers, by route template and "
            "method (long-polls include their hold; streams count until their headers).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.log_lines = Counter(
            "fleetwatch_osquery_log_lines",
            "osquery log lines received and acknowledged, by log type.",
            ["log_type"],
            registry=r,
        )
        self.log_rows_stored = Counter(
            "fleetwatch_osquery_log_rows_stored",
            "Result and status log rows stored (resends of a stored row are not counted).",
            ["log_type"],
            registry=r,
        )
        self.distributed_results = Counter(
            "fleetwatch_distributed_results",
            "Distributed query results written by hosts, by query kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.distributed_rows = Counter(
            "fleetwatch_distributed_rows",
            "Rows in distributed query results written by hosts, by query kind.",
            ["kind"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "fleetwatch_webhook_deliveries",
            "Continuous query webhook delivery attempts by outcome (delivered, failed, dropped "
            "= a subscription given up after its failure limit).",
            ["outcome"],
            registry=r,
        )
        self.matching = Histogram(
            "fleetwatch_change_matching_seconds",
            "Time to match one committed change against every standing query.",
            buckets=MATCH_BUCKETS,
            registry=r,
        )
        self.forwarded_lines = Counter(
            "fleetwatch_log_forward_lines",
            "osquery log lines handed to a forwarding destination, by destination and outcome "
            "(written, dropped: queue full, failed: the destination refused them).",
            ["destination", "outcome"],
            registry=r,
        )
        # Children looked up once per label set: `labels()` takes a lock and hashes a tuple.
        self._latency: dict[tuple[str, str], Any] = {}
        self._agent: dict[tuple[str, int], Any] = {}
        self._results: dict[tuple[str, str], Any] = {}
        self._rows: dict[str, Any] = {}

    # --- the hooks (cheap; called where things happen) ---------------------------------

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        """One request's latency (called by the middleware)."""
        key = (route, method)
        child = self._latency.get(key)
        if child is None:
            child = self._latency[key] = self.http_latency.labels(route, method)
        child.observe(seconds)

    def count_agent_request(self, endpoint: str, status: int) -> None:
        """One agent API request and its outcome."""
        key = (endpoint, status)
        child = self._agent.get(key)
        if child is None:
            child = self._agent[key] = self.agent_requests.labels(endpoint, agent_outcome(status))
        child.inc()

    def on_log_ingest(self, log_type: str, lines: int, stored: int) -> None:
        self.log_lines.labels(log_type).inc(lines)
        self.log_rows_stored.labels(log_type).inc(stored)

    def on_distributed_write(self, results: Sequence[DistributedResult]) -> None:
        # Children cached as above: `labels()` cost more than the rest of a result's write.
        for result in results:
            kind = query_kind(result.name)
            key = (kind, "failed" if result.failed else "ok")
            counter = self._results.get(key)
            if counter is None:
                counter = self._results[key] = self.distributed_results.labels(*key)
            counter.inc()
            if result.rows:
                rows = self._rows.get(kind)
                if rows is None:
                    rows = self._rows[kind] = self.distributed_rows.labels(kind)
                rows.inc(len(result.rows))

    def on_webhook(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    def on_match(self, seconds: float) -> None:
        self.matching.observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every metric, for a scrape."""
        return generate_latest(self.registry)


def query_kind(name: str) -> str:
    """`campaign`, `label`, `detail` or `other` for a distributed query name (bounded labels)."""
    for prefix, kind in (
        ("fleet_distributed_query_", "campaign"),
        ("fleet_label_query_", "label"),
        ("fleet_detail_query_", "detail"),
    ):
        if name.startswith(prefix):
            return kind
    return "other"


class ServicesCollector(Collector):
    """Gauges read off the running services at scrape time (no bookkeeping in hot paths)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the families below are built per scrape

    def collect(self) -> Iterable[Metric]:
        s = self.services
        yield _gauge(
            "fleetwatch_held_long_polls",
            "distributed/read requests held open waiting for work (one per host at most).",
            s.wakeups.waiting,
        )
        now = time.time()
        by_status = {"online": 0, "offline": 0}
        for host in s.hosts.all():
            status = s.hosts.status(host, now)
            by_status[status] = by_status.get(status, 0) + 1
        hosts = GaugeMetricFamily(
            "fleetwatch_hosts",
            "Enrolled hosts by status (online: seen within interval + 60 s).",
            labels=["status"],
        )
        for status, count in sorted(by_status.items()):
            hosts.add_metric([status], count)
        yield hosts
        yield _gauge(
            "fleetwatch_active_campaigns",
            "Live query campaigns running or queued for offline hosts.",
            len(s.campaigns.list_active()),
        )
        stats = s.query_tasks.stats()
        yield _gauge(
            "fleetwatch_query_tasks", "Query tasks held by the server.", float(stats["tasks"])
        )
        yield _gauge(
            "fleetwatch_standing_query_tasks",
            "Continuous query tasks running (matched against every write).",
            float(stats["runningTasks"]),
        )
        hub = s.subscriptions
        yield _gauge(
            "fleetwatch_streams",
            "Standing queries registered for matching (tasks, campaign streams, ad hoc).",
            hub.active_filters,
        )
        yield _gauge(
            "fleetwatch_subscribers",
            "Stream subscribers (WebSocket, SSE, webhook workers).",
            hub.subscriber_count,
        )
        depths = hub.queue_depths()
        yield _gauge(
            "fleetwatch_subscriber_queue_depth_max",
            "Longest subscriber queue (notifications not yet taken by the consumer).",
            max(depths, default=0),
        )
        yield _gauge(
            "fleetwatch_subscriber_queued",
            "Notifications queued over all subscribers.",
            sum(depths),
        )
        yield _gauge(
            "fleetwatch_subscriber_queue_limit",
            "Queue length at which a subscriber gets a resync.",
            hub.queue_limit,
        )
        resyncs = CounterMetricFamily(
            "fleetwatch_subscriber_resyncs",
            "Subscribers that fell behind their queue limit and were sent a resync.",
        )
        resyncs.add_metric([], hub.resyncs)
        yield resyncs
        yield _gauge(
            "fleetwatch_changelog_sequence",
            "Sequence number of the last change committed to the change log.",
            s.index.last_seq,
        )
        yield _gauge(
            "fleetwatch_changelog_matched_sequence",
            "Sequence number of the last change matched against the standing queries.",
            hub.position,
        )
        yield _gauge(
            "fleetwatch_changelog_lag",
            "Committed changes not yet matched against the standing queries.",
            max(0, s.index.last_seq - hub.position),
        )
        yield _gauge(
            "fleetwatch_webhook_workers",
            "Webhook subscriptions with a running delivery worker.",
            float(stats["webhookWorkers"]),
        )
        forwarder = s.ops.forwarder
        if forwarder is not None:
            queued = GaugeMetricFamily(
                "fleetwatch_log_forward_queued",
                "osquery log lines waiting for a forwarding destination.",
                labels=["destination"],
            )
            for name, depth in forwarder.queue_depths().items():
                queued.add_metric([name], depth)
            yield queued


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
