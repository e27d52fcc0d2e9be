"""Destinations: named places events are sent to (an HTTP endpoint as NDJSON, Splunk's HEC,
Elasticsearch's bulk API, a rotated file), in order, at least once, without ever making the
sender wait. Live query campaigns send their result rows there (read from the change log
after a durable cursor) and osquery log forwarding its log lines: one mechanism. Imports
nothing of fleetwatch but `outbound` (the address guard every HTTP destination connects
through) and `periodic`.
"""

from fleetwatch.destinations.events import Event, dumps, log_event
from fleetwatch.destinations.follower import (
    Cursors,
    Feed,
    FeedBatch,
    Follower,
    HasLease,
    cursor_name,
)
from fleetwatch.destinations.hub import Destinations
from fleetwatch.destinations.lane import Lane, LaneState, OnOutcome
from fleetwatch.destinations.settings import LOG_TYPES, NAME_PATTERN, TYPES, DestinationSettings
from fleetwatch.destinations.sinks import (
    BulkSink,
    DestinationError,
    DestinationRejected,
    FileSink,
    HecSink,
    HttpSink,
    LogBatchSink,
    Refused,
    Sink,
)

__all__ = [
    "LOG_TYPES",
    "NAME_PATTERN",
    "TYPES",
    "BulkSink",
    "Cursors",
    "DestinationError",
    "DestinationRejected",
    "DestinationSettings",
    "Destinations",
    "Event",
    "Feed",
    "FeedBatch",
    "FileSink",
    "Follower",
    "HasLease",
    "HecSink",
    "HttpSink",
    "Lane",
    "LaneState",
    "LogBatchSink",
    "OnOutcome",
    "Refused",
    "Sink",
    "cursor_name",
    "dumps",
    "log_event",
]
