"""Result pages of query tasks with a `resultLimit`: `/core/query-page/{set}-{n}`.

A page set is cut from the list of matching links read in one snapshot when the task ran,
so paging is stable: later writes neither shift nor repeat entries between pages (with
EXPAND_CONTENT a page shows each document's current state, or its DELETE state). Page sets
are stored (any node of a cluster serves any page) and cached in memory until their task
expires or is deleted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fleetwatch.index.document import JsonObject

PAGE_PREFIX = "/core/query-page"


@dataclass(frozen=True, slots=True)
class PageSet:
    """The links of one query run, and how to cut and show them."""

    id: str
    task_link: str
    links: list[str]
    page_size: int
    expand: bool
    forward_only: bool
    expiration_micros: int
    seq: int
    #: The user whose task made the pages (team users read only their own).
    owner_id: int | None = None

    @property
    def page_count(self) -> int:
        return max(1, -(-len(self.links) // self.page_size))

    def page_links(self, number: int) -> list[str]:
        start = number * self.page_size
        return self.links[start : start + self.page_size]

    def navigation(self, number: int) -> JsonObject:
        """nextPageLink / prevPageLink of page `number` (absent at the ends)."""
        nav: JsonObject = {}
        if number + 1 < self.page_count:
            nav["nextPageLink"] = page_link(self.id, number + 1)
        if number > 0 and not self.forward_only:
            nav["prevPageLink"] = page_link(self.id, number - 1)
        return nav


def page_link(set_id: str, number: int) -> str:
    return f"{PAGE_PREFIX}/{set_id}-{number}"


class PageStore:
    """The page sets of the running tasks."""

    def __init__(self) -> None:
        self._sets: dict[str, PageSet] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def create(
        self,
        task_link: str,
        links: list[str],
        page_size: int,
        *,
        expand: bool,
        forward_only: bool,
        expiration_micros: int,
        seq: int,
        owner_id: int | None = None,
    ) -> PageSet:
        page_set = PageSet(
            id=secrets.token_hex(8),
            task_link=task_link,
            links=links,
            page_size=page_size,
            expand=expand,
            forward_only=forward_only,
            expiration_micros=expiration_micros,
            seq=seq,
            owner_id=owner_id,
        )
        self._sets[page_set.id] = page_set
        return page_set

    def add(self, page_set: PageSet) -> None:
        """Cache a page set read from the store."""
        self._sets[page_set.id] = page_set

    def find(self, page_id: str) -> tuple[PageSet, int] | None:
        """The page set and page number of a page id (`{set}-{n}`), or None."""
        set_id, _, number = page_id.rpartition("-")
        page_set = self._sets.get(set_id)
        if page_set is None or not number.isdigit():
            return None
        page = int(number)
        if page >= page_set.page_count:
            return None
        return page_set, page

    def sweep(self, now_micros: int) -> int:
        """Forget page sets whose expiry has passed; return how many."""
        gone = [k for k, s in self._sets.items() if s.expiration_micros <= now_micros]
        for key in gone:
            del self._sets[key]
        return len(gone)

    def drop_task(self, task_link: str) -> None:
        for key in [k for k, s in self._sets.items() if s.task_link == task_link]:
            del self._sets[key]
