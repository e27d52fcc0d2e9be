"""Destinations: named places events are sent to (an HTTP endpoint as NDJSON, Splunk's HEC,
Elasticsearch's bulk API, a rotated file), in order, at least once, without ever making the
sender wait. Live query campaigns send their result rows there and osquery log forwarding
its log lines: one mechanism. Imports nothing of fleetwatch but `outbound` (the address
guard every HTTP destination connects through).
"""

from fleetwatch.destinations.events import Event, dumps, log_event
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
    "DestinationError",
    "DestinationRejected",
    "DestinationSettings",
    "Destinations",
    "Event",
    "FileSink",
    "HecSink",
    "HttpSink",
    "Lane",
    "LaneState",
    "LogBatchSink",
    "OnOutcome",
    "Refused",
    "Sink",
    "dumps",
    "log_event",
]
