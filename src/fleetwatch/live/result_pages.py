"""A campaign's results page by page, read from the store in bounded chunks.

Two orders:

- by host (the default, `order_key=host_id`): one entry per targeted host in host id order,
  its stored result or, for a host that has not answered, a `pending` or `offline` entry. A
  page reads the campaign's target list and the stored results of that page's hosts only;
  its cursor is the last host id, so a host is listed exactly once however many answers
  arrive during the walk (it shows whichever state it had when its page was read).
- by a stat (`order_key=wall_time_ms`, `memory`, `user_time` or `system_time`, with
  `order_direction`): the hosts that answered, by that stat of osquery's (`stats`), answers
  without it last, ties by host; keyset pages over the result documents
  (`fleetwatch.query.keyset`), so an answer present for the whole walk is listed once.

A cursor is opaque to clients (`next` in a page, `after` to continue); `page` / `per_page`
keep working as before (an offset in the same order).

A team-only reader sees only their teams' hosts (`fleetwatch.live.result_scope`, applied at
every read): the entries of other hosts are left out of a page, which may then hold fewer
than `per_page` (`next` says whether more follow), and `count` stays the campaign's.
"""

from __future__ import annotations

import base64
import binascii
import weakref
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from fleetwatch.fleet.errors import Invalid, NotFound
from fleetwatch.fleet.hosts import HostService
from fleetwatch.index import DocumentIndex
from fleetwatch.live.campaign_cost import STAT_FIELDS
from fleetwatch.live.campaign_docs import RESULT_KIND, result_link, result_view, targets_link
from fleetwatch.live.result_scope import EVERY_HOST, ResultScope
from fleetwatch.query import keyset

#: What results can be ordered by.
ORDER_KEYS = ("host_id", *STAT_FIELDS)
#: The stat order served by expression indexes (migration 0010 creates them as this
#: renders them): the one a results table sorts by first.
RESULT_WALL_TIME = keyset.IndexedOrder(RESULT_KIND, "campaign_id", ("stats", "wall_time_ms"))


@dataclass(frozen=True, slots=True)
class ResultOrder:
    """`order_key` and `order_direction` of a results request."""

    key: str = "host_id"
    descending: bool = False

    @classmethod
    def parse(cls, key: str | None, direction: str | None) -> ResultOrder:
        key = key or "host_id"
        if key not in ORDER_KEYS:
            raise Invalid(f"order_key must be one of {', '.join(ORDER_KEYS)}, not {key!r}")
        if direction not in (None, "asc", "desc"):
            raise Invalid(f"order_direction must be asc or desc, not {direction!r}")
        if key == "host_id" and direction == "desc":
            raise Invalid(
                "results by host come in host id order (asc); order_direction desc needs an "
                f"order_key of {', '.join(STAT_FIELDS)}"
            )
        return cls(key, direction == "desc")

    @property
    def by_host(self) -> bool:
        return self.key == "host_id"

    def keyset_order(self) -> keyset.NumberOrder:
        return keyset.NumberOrder(("stats", self.key), self.descending)

    @property
    def tag(self) -> str:
        return f"{self.key}:{'desc' if self.descending else 'asc'}"


@dataclass(frozen=True, slots=True)
class ResultPage:
    results: list[dict[str, Any]]
    #: Entries in this order in all: targeted hosts by host, answers (the campaign's
    #: `responded`) by a stat.
    count: int
    #: The cursor to pass as `after` for the next page; None on the last.
    next: str | None


#: The targeted and the online-at-start host ids of a campaign, sorted.
TargetLists = tuple["array[int]", "array[int]"]
#: Host ids kept by the target-list cache of one index, over its campaigns (8 bytes each).
CACHED_TARGET_IDS = 1_000_000


class TargetListCache:
    """Campaigns' target lists, most recently used kept, up to `budget` host ids in all
    (the latest one always). A campaign's targets document is written once, when it is
    created, so a cached copy never goes stale; campaign ids are never reused."""

    def __init__(self, budget: int = CACHED_TARGET_IDS) -> None:
        self.budget = budget
        self._lists: OrderedDict[int, TargetLists] = OrderedDict()
        self._size = 0

    def get(self, campaign_id: int) -> TargetLists | None:
        lists = self._lists.get(campaign_id)
        if lists is not None:
            self._lists.move_to_end(campaign_id)
        return lists

    def put(self, campaign_id: int, lists: TargetLists) -> None:
        old = self._lists.pop(campaign_id, None)
        if old is not None:
            self._size -= len(old[0]) + len(old[1])
        self._lists[campaign_id] = lists
        self._size += len(lists[0]) + len(lists[1])
        while self._size > self.budget and len(self._lists) > 1:
            _, dropped = self._lists.popitem(last=False)
            self._size -= len(dropped[0]) + len(dropped[1])


#: One cache per document index (per store: campaign ids are unique within one).
_caches: weakref.WeakKeyDictionary[DocumentIndex, TargetListCache] = weakref.WeakKeyDictionary()


def _target_cache(index: DocumentIndex) -> TargetListCache:
    cache = _caches.get(index)
    if cache is None:
        cache = _caches[index] = TargetListCache()
    return cache


class CampaignResults:
    """Reads one campaign's results (its documents and target list) in pages."""

    def __init__(
        self,
        index: DocumentIndex,
        hosts: HostService,
        campaign: dict[str, Any],
        scope: ResultScope = EVERY_HOST,
    ) -> None:
        self.index = index
        self.hosts = hosts
        #: Whose hosts' entries the reader sees (a team-only reader: their teams').
        self.scope = scope
        self.campaign_id = int(campaign["id"])
        #: The campaign's status, shown on the entries of hosts that have not answered.
        self.status = str(campaign["status"])
        #: Its answers, as its totals count them (the count of pages by a stat: counting
        #: them in the store would read every result's row on every page).
        self.responded = int(campaign.get("totals", {}).get("responded") or 0)
        self._targets: TargetLists | None = None

    # --- cursors -----------------------------------------------------------------------

    def _encode(self, order: ResultOrder, position: dict[str, Any]) -> str:
        raw = orjson.dumps({"o": order.tag, **position})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode(self, order: ResultOrder, cursor: str) -> dict[str, Any]:
        try:
            body = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError):
            body = None
        if not isinstance(body, dict):
            raise Invalid("after must be the `next` cursor of a previous page of these results")
        if body.get("o") != order.tag:
            raise Invalid(
                "after is a cursor of another order: give the same order_key and "
                "order_direction as the page it came from"
            )
        return body

    # --- pages -------------------------------------------------------------------------

    async def page(
        self, order: ResultOrder, *, per_page: int, page: int = 0, after: str | None = None
    ) -> ResultPage:
        """One page: the `page`-th of `per_page` entries, or the `per_page` after `after`."""
        if after is not None and page:
            raise Invalid("give either page or after (a cursor), not both")
        if order.by_host:
            return await self._host_page(order, per_page, page, after)
        return await self._stat_page(order, per_page, page, after)

    async def _host_page(
        self, order: ResultOrder, per_page: int, page: int, after: str | None
    ) -> ResultPage:
        host_ids, _online = await self._target_lists()
        if after is None:
            start = page * per_page
        else:
            last = self._decode(order, after).get("h")
            if isinstance(last, bool) or not isinstance(last, int):
                raise Invalid("after must be the `next` cursor of a previous page")
            start = bisect_right(host_ids, last)
        chunk = host_ids[start : start + per_page]
        results = await self._for_hosts(chunk)
        more = start + per_page < len(host_ids)
        cursor = self._encode(order, {"h": chunk[-1]}) if more and chunk else None
        return ResultPage(results, len(host_ids), cursor)

    async def _stat_page(
        self, order: ResultOrder, per_page: int, page: int, after: str | None
    ) -> ResultPage:
        position = None
        if after is not None:
            body = self._decode(order, after)
            link, value = body.get("l"), body.get("v")
            if not isinstance(link, str) or not (value is None or isinstance(value, float | int)):
                raise Invalid("after must be the `next` cursor of a previous page")
            position = keyset.Position(link, None if value is None else float(value))
        found = await self._read(
            order,
            limit=per_page + 1,  # one more tells whether there is a next page
            after=position,
            offset=0 if position is not None else page * per_page,
        )
        docs = found.documents[:per_page]
        cursor = None
        if len(found.documents) > per_page:
            end = found.positions[per_page - 1]
            cursor = self._encode(order, {"l": end.link, "v": end.value})
        return ResultPage(self._answers(d.body for d in docs), self.responded, cursor)

    # --- whole exports, chunk by chunk -------------------------------------------------

    async def chunks(self, order: ResultOrder, size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Every entry in `order`, `size` at a time (one bounded store read per chunk)."""
        if order.by_host:
            host_ids, _online = await self._target_lists()
            for start in range(0, len(host_ids), size):
                yield await self._for_hosts(host_ids[start : start + size])
            return
        position: keyset.Position | None = None
        while True:
            found = await self._read(order, limit=size, after=position)
            if not found.documents:
                return
            yield self._answers(d.body for d in found.documents)
            position = found.end

    # --- reading -----------------------------------------------------------------------

    def _answers(self, bodies: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stored answers as the API shows them, those the reader may see."""
        return [result_view(b) for b in bodies if self.scope.keeps_answer(b)]

    def _result_prefix(self) -> str:
        return result_link(self.campaign_id, 0)[:-1]

    async def _read(
        self,
        order: ResultOrder,
        *,
        limit: int,
        after: keyset.Position | None,
        offset: int = 0,
    ) -> keyset.Page:
        """Answers in a stat's order: through the wall time indexes (migration 0010), or
        for the other stats sorted in the store."""
        if order.key == RESULT_WALL_TIME.path[-1]:
            return await keyset.read_indexed_page(
                self.index.db,
                RESULT_WALL_TIME,
                self.campaign_id,
                limit=limit,
                descending=order.descending,
                after=after,
                offset=offset,
            )
        return await keyset.read_page(
            self.index.db,
            self._result_prefix(),
            kind=RESULT_KIND,
            limit=limit,
            after=after,
            offset=offset,
            order=order.keyset_order(),
        )

    async def _target_lists(self) -> TargetLists:
        """The targeted and the online-at-start host ids, each sorted (as the campaign
        writes them in its targets document), as arrays: 8 bytes a host, where a list of
        ints costs about 36. Read once per campaign while it stays in the cache, not once
        per page: the document of a 100,000-host campaign takes 7 MB to parse."""
        if self._targets is None:
            cache = _target_cache(self.index)
            self._targets = cache.get(self.campaign_id)
            if self._targets is None:
                doc = await self.index.get(targets_link(self.campaign_id))
                if doc is None:
                    raise NotFound(f"no campaign with id {self.campaign_id}")
                self._targets = (
                    array("q", doc.body.get("host_ids") or ()),
                    array("q", doc.body.get("online_host_ids") or ()),
                )
                cache.put(self.campaign_id, self._targets)
        return self._targets

    async def _for_hosts(self, host_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The entries of these hosts: stored results, or pending/offline ones."""
        _targeted, online = await self._target_lists()
        links = [result_link(self.campaign_id, h) for h in host_ids]
        stored = await self.index.get_many(links)
        out = []
        for host_id, link in zip(host_ids, links, strict=True):
            doc = stored.get(link)
            if doc is not None:
                if self.scope.keeps_answer(doc.body):
                    out.append(result_view(doc.body))
                continue
            state = self.hosts.by_id(host_id)
            if not self.scope.keeps_host(state):
                continue
            i = bisect_left(online, host_id)
            out.append(
                unanswered(
                    self.campaign_id,
                    host_id,
                    state.hostname if state else "",
                    online=i < len(online) and online[i] == host_id,
                    campaign_status=self.status,
                )
            )
        return out


def unanswered(
    campaign_id: int, host_id: int, hostname: str, *, online: bool, campaign_status: str
) -> dict[str, Any]:
    """The entry of a targeted host that has not answered (`pending`, or `offline` when
    it was offline at the campaign's start)."""
    return {
        "campaign_id": campaign_id,
        "host_id": host_id,
        "hostname": hostname,
        "status": "pending" if online else "offline",
        "error": None,
        "rows": [],
        "columns": [],
        "rows_count": 0,
        "stats": {},
        "truncated": False,
        "truncated_reason": None,
        "queued": not online,
        "campaign_status": campaign_status,
    }
