"""Prometheus metrics: one registry per app, so several servers in one process never clash.

Counters are bumped by small hooks where things happen (a request ends, a webhook is
delivered, a log batch is stored). Everything that can be read off the services at scrape
time (held long-polls, active campaigns, standing tasks, subscribers and their queues, the
change-log sequence) is read at scrape time by `GaugeCollector`, so the hot paths keep no
extra bookkeeping. The collector is handed what it observes (`Observed`, implemented over
the services by `fleetwatch.instrument`): this module imports none of the services.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from fleetwatch.dispatch.distributed import DistributedResult

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
        # Counted on every request: integer adds, read by a collector at scrape time
        # (a prometheus_client child takes a lock per increment).
        self.agent_requests = IntCounters(
            "fleetwatch_agent_requests",
            "osquery agent API requests by endpoint and outcome "
            "(ok, node_invalid, refused, too_large, error).",
            ("endpoint", "outcome"),
        )
        self.http_latency = IntHistogram(
            "fleetwatch_http_request_duration_seconds",
            "Time from a request's arrival to its response headers, by route template and "
            "method (long-polls include their hold; streams count until their headers).",
            ("route", "method"),
            LATENCY_BUCKETS,
        )
        self.distributed_results = IntCounters(
            "fleetwatch_distributed_results",
            "Distributed query results written by hosts, by query kind and outcome.",
            ("kind", "outcome"),
        )
        self.distributed_rows = IntCounters(
            "fleetwatch_distributed_rows",
            "Rows in distributed query results written by hosts, by query kind.",
            ("kind",),
        )
        self.agent_shed = IntCounters(
            "fleetwatch_agent_shed",
            "Agent requests answered at once with a busy error instead of being queued past "
            "osquery's 16 s timeout, by endpoint and reason (queue_full, queue_slow, "
            "enrolls_full, enrolls_slow).",
            ("endpoint", "reason"),
        )
        for collector in (
            self.agent_shed,
            self.agent_requests,
            self.http_latency,
            self.distributed_results,
            self.distributed_rows,
        ):
            r.register(collector)
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
        self.destination_events = Counter(
            "fleetwatch_destination_events",
            "Events (campaign result rows, forwarded osquery log lines) handed to a destination, "
            "by destination and outcome (sent; failed: the destination refused them for good; "
            "dropped: its queue was full or it stayed down past its retention).",
            ["destination", "outcome"],
            registry=r,
        )
        #: (endpoint, status) -> its outcome label, computed once per pair.
        self._outcomes: dict[tuple[str, int], tuple[str, str]] = {}

    # --- the hooks (cheap; called where things happen) ---------------------------------

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        """One request's latency (called by the middleware)."""
        self.http_latency.observe((route, method), seconds)

    def count_agent_request(self, endpoint: str, status: int) -> None:
        """One agent API request and its outcome."""
        key = (endpoint, status)
        labels = self._outcomes.get(key)
        if labels is None:
            labels = self._outcomes[key] = (endpoint, agent_outcome(status))
        self.agent_requests.add(labels)

    def on_log_ingest(self, log_type: str, lines: int, stored: int) -> None:
        self.log_lines.labels(log_type).inc(lines)
        self.log_rows_stored.labels(log_type).inc(stored)

    def on_distributed_write(self, results: Sequence[DistributedResult]) -> None:
        for result in results:
            kind = query_kind(result.name)
            self.distributed_results.add((kind, "failed" if result.failed else "ok"))
            if result.rows:
                self.distributed_rows.add((kind,), len(result.rows))

    def on_webhook(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    def on_match(self, seconds: float) -> None:
        self.matching.observe(seconds)

    def on_destination(self, destination: str, outcome: str, events: int) -> None:
        self.destination_events.labels(destination, outcome).inc(events)

    def render(self) -> bytes:
        """The text exposition of every metric, for a scrape."""
        return generate_latest(self.registry)


class IntCounters(Collector):
    """A labelled counter kept as plain integers (one dict add per event).

    Only the event loop adds; a scrape from the metrics port's thread copies the dict first
    (one C-level copy under the GIL, so it never sees it change size mid-iteration).
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.values: dict[tuple[str, ...], int] = {}

    def add(self, labels: tuple[str, ...], amount: int = 1) -> None:
        """Count `amount` for this label set (values in the order of `labels`)."""
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in self.values.copy().items():
            family.add_metric(labels, float(value))
        yield family


class IntHistogram(Collector):
    """A labelled histogram kept as plain integers: per label set, a count per bucket (not
    cumulative) and the sum; made cumulative at scrape time."""

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.bounds = tuple(float(b) for b in buckets)
        #: label values -> [count in each bucket..., count above the last bound, sum].
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        """One observation for this label set."""
        counts = self.values.get(labels)
        if counts is None:
            counts = self.values[labels] = [0.0] * (len(self.bounds) + 2)
        # `le` buckets: a value equal to a bound counts in that bound's bucket.
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, counts in self.values.copy().items():
            counts = list(counts)
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip((*self.bounds, math.inf), counts[:-1], strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric(labels, buckets, counts[-1])
        yield family


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


class StandingQueries(Protocol):
    """The standing-query hub as the gauges read it (`query.subscriptions.SubscriptionHub`)."""

    queue_limit: int
    resyncs: int
    position: int

    @property
    def active_filters(self) -> int: ...

    @property
    def subscriber_count(self) -> int: ...

    def queue_depths(self) -> list[int]: ...


class Observed(Protocol):
    """What the scrape-time gauges read off the running app."""

    #: The standing-query hub.
    hub: StandingQueries

    def held_long_polls(self) -> int:
        """distributed/read requests held open now."""
        ...

    def host_statuses(self, now: float) -> Iterable[str]:
        """Each enrolled host's status (`online` or `offline`) at `now`."""
        ...

    def active_campaigns(self) -> int:
        """Live query campaigns running or queued."""
        ...

    def task_stats(self) -> Mapping[str, Any]:
        """The query task service's counts (`tasks`, `runningTasks`, `webhookWorkers`)."""
        ...

    def last_seq(self) -> int:
        """The last committed change's sequence number."""
        ...

    def destination_queue_depths(self) -> Mapping[str, int]:
        """Events queued per destination."""
        ...


class GaugeCollector(Collector):
    """Gauges read off the running app at scrape time (no bookkeeping in hot paths)."""

    def __init__(self, observed: Observed) -> None:
        self.observed = observed

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the families below are built per scrape

    def collect(self) -> Iterable[Metric]:
        s = self.observed
        yield _gauge(
            "fleetwatch_held_long_polls",
            "distributed/read requests held open waiting for work (one per host at most).",
            s.held_long_polls(),
        )
        now = time.time()
        by_status = {"online": 0, "offline": 0}
        for status in s.host_statuses(now):
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
            s.active_campaigns(),
        )
        stats = s.task_stats()
        yield _gauge(
            "fleetwatch_query_tasks", "Query tasks held by the server.", float(stats["tasks"])
        )
        yield _gauge(
            "fleetwatch_standing_query_tasks",
            "Continuous query tasks running (matched against every write).",
            float(stats["runningTasks"]),
        )
        hub = s.hub
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
            s.last_seq(),
        )
        yield _gauge(
            "fleetwatch_changelog_matched_sequence",
            "Sequence number of the last change matched against the standing queries.",
            hub.position,
        )
        yield _gauge(
            "fleetwatch_changelog_lag",
            "Committed changes not yet matched against the standing queries.",
            max(0, s.last_seq() - hub.position),
        )
        yield _gauge(
            "fleetwatch_webhook_workers",
            "Webhook subscriptions with a running delivery worker.",
            float(stats["webhookWorkers"]),
        )
        queue_depths = s.destination_queue_depths()
        if queue_depths:
            queued = GaugeMetricFamily(
                "fleetwatch_destination_queued",
                "Events waiting for a destination.",
                labels=["destination"],
            )
            for name, queue_depth in queue_depths.items():
                queued.add_metric([name], queue_depth)
            yield queued


class Admitted(Protocol):
    """Agent admission control as its gauges read it (`osquery.admission.Admission`)."""

    queue_limit: int
    enroll_backlog: int

    @property
    def enrolling(self) -> int: ...

    @property
    def queued(self) -> int: ...


class AdmissionGauges(Collector):
    """The agent backlogs admission control bounds, read at scrape time."""

    def __init__(self, admitted: Admitted) -> None:
        self.admitted = admitted

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        a = self.admitted
        yield _gauge(
            "fleetwatch_agent_queue",
            "Agent requests waiting for their turn in the agent lane.",
            a.queued,
        )
        yield _gauge(
            "fleetwatch_agent_queue_limit",
            "Waiting agent requests beyond which new ones are shed (0: no bound).",
            a.queue_limit,
        )
        yield _gauge("fleetwatch_enrolls_in_progress", "Enrolls being served now.", a.enrolling)
        yield _gauge(
            "fleetwatch_enroll_backlog_limit",
            "Enrolls in progress beyond which new ones are shed (0: no bound).",
            a.enroll_backlog,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
