"""The running server's services, built once by `create_app` and shared by the adapters."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch.config import Settings
from fleetwatch.index import DocumentIndex
from fleetwatch.storage import Database


@dataclass
class Services:
    """Everything a request handler may need: one typed instance per app, no string keys.

    Subsystems add a typed field here when they are built (see `create_app`).
    """

    settings: Settings
    db: Database
    index: DocumentIndex
