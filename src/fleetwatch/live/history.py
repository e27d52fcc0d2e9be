"""Campaign history: every stored campaign (running or over), filtered, newest first, paged.

`GET /api/v1/fleet/campaigns` filters by `query_id`, `sql` (the exact SQL), `user_id`, and
`since` / `until` (its creation time, inclusive). Campaigns are kept for
`live_query_result_retention`. The filters run in the database over the campaign documents
(fleetwatch.query.sql); the creation times are compared after parsing, since RFC 3339 text
does not sort as time when the fraction of a second is left out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fleetwatch.fleet.errors import Invalid
from fleetwatch.live.campaign_docs import CAMPAIGN_KIND, campaign_link, result_view
from fleetwatch.live.campaigns import CampaignService
from fleetwatch.query.listing import Listing, read_fields
from fleetwatch.query.scope import all_of, term
from fleetwatch.query.spec import Query


@dataclass(frozen=True)
class CampaignFilter:
    """What a history listing keeps (None: no filter on it)."""

    user_id: int | None = None
    query_id: int | None = None
    sql: str | None = None
    since: float | None = None
    until: float | None = None

    def query(self) -> Query:
        """The filters the database applies (the times are compared after reading)."""
        clauses = [term("documentKind", CAMPAIGN_KIND)]
        if self.user_id is not None:
            clauses.append(term("user_id", self.user_id))
        if self.query_id is not None:
            clauses.append(term("query_id", self.query_id))
        if self.sql is not None:
            clauses.append(term("query", self.sql))
        return all_of(*clauses)

    def keeps(self, created_at: float) -> bool:
        return (self.since is None or created_at >= self.since) and (
            self.until is None or created_at <= self.until
        )


def parse_time(value: str | None, name: str) -> float | None:
    """An RFC 3339 time (a zone-less one is UTC) as epoch seconds; Invalid says the form."""
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(
            f"{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z, not {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _epoch(text: str | None) -> float:
    return parse_time(text, "created_at") or 0.0


async def list_campaigns(
    campaigns: CampaignService, filters: CampaignFilter, page: int, per_page: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the matching campaigns, newest first, and how many match in all.

    Active campaigns show their live totals (as GET /campaigns/{id} does)."""
    db = campaigns.index.db
    rows = await read_fields(db, Listing(where=filters.query()), ("id", "created_at"))
    matching = sorted(
        (int(str(f["id"])) for _, f in rows if filters.keeps(_epoch(f["created_at"]))),
        reverse=True,
    )
    chosen = matching[page * per_page : (page + 1) * per_page]
    bodies: dict[int, dict[str, Any]] = {}
    stored = [i for i in chosen if campaigns.active(i) is None]
    if stored:
        found = await campaigns.index.get_many([campaign_link(i) for i in stored])
        for doc in found.values():
            view = result_view(doc.body)
            bodies[int(view["id"])] = view
    out = []
    for campaign_id in chosen:
        active = campaigns.active(campaign_id)
        if active is not None:
            out.append(active.to_json())
        elif campaign_id in bodies:  # purged between the two reads: left out
            out.append(bodies[campaign_id])
    return out, len(matching)
