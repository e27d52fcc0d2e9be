"""osquery log forwarding: result and status logs also to files and an HTTP endpoint."""

from fleetwatch.forwarding.destinations import (
    Destination,
    DestinationError,
    FileDestination,
    HttpDestination,
)
from fleetwatch.forwarding.forwarder import LogForwarder

__all__ = [
    "Destination",
    "DestinationError",
    "FileDestination",
    "HttpDestination",
    "LogForwarder",
]
