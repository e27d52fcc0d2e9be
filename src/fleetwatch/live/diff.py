"""Comparing two runs of the same SQL, host by host.

`GET /api/v1/fleet/campaigns/{id}/diff?against={other}` answers

    {"hosts": [{"host_id", "hostname", "added": [rows], "removed": [rows]}],
     "only_in_campaign": [host ids], "only_in_other": [host ids]}

A host counts as having answered a campaign when its result is `complete` (an error answer
has no rows to compare). For each host that answered both and whose rows differ, `added`
holds the rows of `{id}` that `{other}` lacks and `removed` the reverse. Rows are compared
as whole rows (every column), as multisets: a row twice in one and once in the other is
added or removed once. Rows keep the order their host sent them in. A team-only reader
compares only their teams' hosts' answers (`fleetwatch.live.result_scope`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from fleetwatch.fleet.errors import Invalid
from fleetwatch.index import DocumentIndex
from fleetwatch.live.campaign_docs import result_link, result_view
from fleetwatch.live.result_scope import EVERY_HOST, ResultScope
from fleetwatch.query.listing import Listing, read_page


async def answers(
    index: DocumentIndex, campaign_id: int, scope: ResultScope = EVERY_HOST
) -> dict[int, dict[str, Any]]:
    """The campaign's complete answers by host id (those `scope` lets the reader see)."""
    prefix = result_link(campaign_id, 0)[:-1]
    page = await read_page(index.db, Listing(link_prefix=prefix))
    results = [result_view(body) for body in page.bodies if scope.keeps_answer(body)]
    return {int(r["host_id"]): r for r in results if r.get("status") == "complete"}


def _key(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def _minus(rows: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of `rows` not in `other`, counted as a multiset, in `rows`' order."""
    left = Counter(_key(r) for r in other)
    out = []
    for row in rows:
        key = _key(row)
        if left[key]:
            left[key] -= 1
        else:
            out.append(row)
    return out


def compare(mine: dict[int, dict[str, Any]], theirs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The diff of two campaigns' answers (see the module docstring)."""
    hosts = []
    for host_id in sorted(mine.keys() & theirs.keys()):
        rows, other = list(mine[host_id].get("rows") or ()), list(theirs[host_id].get("rows") or ())
        added, removed = _minus(rows, other), _minus(other, rows)
        if added or removed:
            hostname = mine[host_id].get("hostname") or theirs[host_id].get("hostname") or ""
            hosts.append(
                {"host_id": host_id, "hostname": hostname, "added": added, "removed": removed}
            )
    return {
        "hosts": hosts,
        "only_in_campaign": sorted(mine.keys() - theirs.keys()),
        "only_in_other": sorted(theirs.keys() - mine.keys()),
    }


async def diff(
    index: DocumentIndex,
    campaign: dict[str, Any],
    other: dict[str, Any],
    scope: ResultScope = EVERY_HOST,
) -> dict[str, Any]:
    """Compare two campaigns (as `CampaignService.get` shows them); Invalid if their SQL
    differs (the rows of two different questions say nothing about change)."""
    if campaign["query"] != other["query"]:
        raise Invalid(
            f"campaign {campaign['id']} and campaign {other['id']} ran different SQL: a diff "
            "compares two runs of the same query; pick an earlier run of the same SQL "
            "(GET /api/v1/fleet/campaigns?sql=...)"
        )
    mine = await answers(index, int(campaign["id"]), scope)
    return compare(mine, await answers(index, int(other["id"]), scope))
