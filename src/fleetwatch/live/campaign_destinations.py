"""A campaign's destinations: which names it may list, and the events its answers become.

A campaign or saved query with `"destinations": ["siem"]` sends each stored result row as one
event to each named destination (settings `[destinations.NAME]`, fleetwatch.destinations):
the campaign id, its SQL, the host id, hostname and team, the row and the change-log
sequence of the result it came in. The event id `{campaign}-{host}-{row index}` is the same
for a repeat, so Elasticsearch overwrites instead of duplicating. Rows a limit kept out of
the result (truncated) are not sent; an answer with an error has no rows and sends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from fleetwatch.destinations import Event, dumps
from fleetwatch.fleet.errors import Invalid
from fleetwatch.index import Change

#: The event source of a campaign result row (Splunk sourcetype `fleetwatch:campaign`).
SOURCE = "campaign"

#: The destination names a server knows (the app sets it from the settings).
Names = Callable[[], Collection[str]]


class HasDestinations(Protocol):
    """What an event needs of its campaign."""

    id: int
    query: str
    query_id: int | None


def check_destinations(value: object, known: Collection[str]) -> tuple[str, ...]:
    """The `destinations` of a request, each a known name, without repeats (None: none).

    Invalid lists the known names."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(
            f'destinations must be a list of destination names like ["siem"]{_known(known)}'
        )
    unknown = [v for v in value if v not in known]
    if unknown:
        raise Invalid(f"unknown destination {', '.join(repr(v) for v in unknown)}{_known(known)}")
    return tuple(dict.fromkeys(value))


def _known(known: Collection[str]) -> str:
    if not known:
        return (
            ": this server has no destinations (an operator adds them as [destinations.NAME] "
            "in the settings)"
        )
    return f": the known destinations are {', '.join(sorted(known))}"


def result_events(campaign: HasDestinations, change: Change) -> list[Event]:
    """One event per stored row of a committed result document."""
    body = change.body
    rows = body.get("rows") or ()
    if not rows:
        return []
    host_id = int(body["host_id"])
    hostname = body.get("hostname")
    common: dict[str, Any] = {
        "campaign_id": campaign.id,
        "query_id": campaign.query_id,
        "sql": campaign.query,
        "host_id": host_id,
        "hostname": hostname,
        "team_id": body.get("team_id"),
        "seq": change.seq,
        "received_at": body.get("received_at"),
    }
    now = time.time()
    return [
        Event(
            SOURCE,
            f"{campaign.id}-{host_id}-{n}",
            dumps({**common, "row_index": n, "row": row}),
            now,
            str(hostname) if hostname is not None else None,
        )
        for n, row in enumerate(rows)
    ]
