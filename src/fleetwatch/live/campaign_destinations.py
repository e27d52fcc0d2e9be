"""A campaign's destinations: which names it may list, and the events its answers become.

A campaign or saved query with `"destinations": ["siem"]` sends each stored result row as one
event to each named destination (settings `[destinations.NAME]`, fleetwatch.destinations):
the campaign id, its SQL, the host id, hostname and team, the row and the change-log
sequence of the result it came in. The event id `{campaign}-{host}-{row index}` is the same
for a repeat, so Elasticsearch overwrites instead of duplicating. Rows a limit kept out of
the result (truncated) are not sent; an answer with an error has no rows and sends nothing.

The rows are not handed over when they are stored: each destination reads the stored results
from the change log (`CampaignResults`, its follower's feed), so what was stored is sent even
after a restart. A result names its campaign's destinations, so a destination picks its own
without looking up every campaign (a result without the list, stored by an older version,
takes its campaign's). The log is read a page of changes at a time, yielding to the event
loop between results, and a read ends once it holds a batch of events: one read never holds
more than a page of results and a batch of events, whatever the campaigns' sizes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from fleetwatch.destinations import Event, FeedBatch, dumps
from fleetwatch.fleet.errors import Invalid
from fleetwatch.index import Action, Change, DocumentIndex
from fleetwatch.live.campaign_docs import RESULT_KIND, campaign_link

#: The event source of a campaign result row (Splunk sourcetype `fleetwatch:campaign`).
SOURCE = "campaign"

#: The destination names a server knows (the app sets it from the settings).
Names = Callable[[], Collection[str]]


class HasDestinations(Protocol):
    """What an event needs of its campaign."""

    @property
    def id(self) -> int: ...

    @property
    def query(self) -> str | None: ...

    @property
    def query_id(self) -> int | None: ...


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
    moment = change.time_micros / 1e6
    return [
        Event(
            SOURCE,
            f"{campaign.id}-{host_id}-{n}",
            dumps({**common, "row_index": n, "row": row}),
            moment,
            str(hostname) if hostname is not None else None,
        )
        for n, row in enumerate(rows)
    ]


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """What an event tells of its campaign (from the campaign document)."""

    id: int
    query: str | None
    query_id: int | None
    #: Where its rows go (for results stored without the list: by an older version).
    destinations: tuple[str, ...] = ()


#: Campaigns whose facts a feed remembers (a destination reads a few campaigns at a time).
FACTS_CACHE = 1024
#: Changes fetched from the log per query (each may hold a large result body).
PAGE = 50
#: Changes looked at in one read at most: a read over others' results ends (its cursor
#: saved) and the next goes on, so a step stays short.
SCAN = 2000


class CampaignResults:
    """The stored campaign results of the change log, as one destination's events (the
    `Feed` of fleetwatch.destinations.follower)."""

    def __init__(self, index: DocumentIndex, page: int = PAGE, scan: int = SCAN) -> None:
        self.index = index
        self.page = page
        self.scan = scan
        self._facts: dict[int, CampaignFacts] = {}

    async def read(self, destination: str, after: int, limit: int) -> FeedBatch:
        """Events of the results stored after sequence `after` that name `destination`,
        through the result that brings them to `limit` (see the Feed protocol)."""
        # The end first: every change up to it is committed (the log is appended in commit
        # order), so a read that reaches the log's end has seen all of them.
        end = await self.index.read_last_seq()
        events: list[Event] = []
        last, scanned = after, 0
        while True:
            changes = await self.index.read_changes(last, self.page, kinds=(RESULT_KIND,))
            for change in changes:
                await asyncio.sleep(0)  # a result's rows at a time: others run between
                last = change.seq
                if change.action is Action.POST and destination in await self._names(change):
                    facts = await self._campaign(int(change.body["campaign_id"]))
                    events.extend(result_events(facts, change))
                    if len(events) >= limit:
                        return FeedBatch(events, last, True)
            scanned += len(changes)
            if len(changes) < self.page:
                return FeedBatch(events, max(last, end), False)
            if scanned >= self.scan:
                return FeedBatch(events, last, True)

    async def _names(self, change: Change) -> Collection[str]:
        """The destinations a result names (a result is created once; later writes are not
        new rows): its own list, or its campaign's when it has none (an older version's)."""
        names = change.body.get("destinations")
        if names is not None:
            return tuple(names)
        return (await self._campaign(int(change.body["campaign_id"]))).destinations

    async def end(self) -> int:
        return await self.index.read_last_seq()

    async def first_retained(self) -> int:
        return await self.index.first_retained_seq()

    async def _campaign(self, campaign_id: int) -> CampaignFacts:
        facts = self._facts.get(campaign_id)
        if facts is None:
            doc = await self.index.get(campaign_link(campaign_id))
            body = doc.body if doc is not None else {}
            query_id = body.get("query_id")
            facts = CampaignFacts(
                campaign_id,
                body.get("query"),
                int(query_id) if query_id is not None else None,
                tuple(body.get("destinations") or ()),
            )
            if len(self._facts) >= FACTS_CACHE:
                del self._facts[next(iter(self._facts))]
            self._facts[campaign_id] = facts
        return facts
