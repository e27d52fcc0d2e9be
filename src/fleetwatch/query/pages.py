"""Result pages of query tasks with a `resultLimit`: `/core/query-page/{set}-{n}`.

A page set is cut from the list of matching links read in one snapshot when the task ran,
so paging is stable: later writes neither shift nor repeat entries between pages (with
EXPAND_CONTENT a page shows each document's current state, or its DELETE state). Page sets
are stored (any node of a cluster serves any page) and cached in memory until their task
expires or is deleted.

A page set's `view` says how its pages show their documents beyond EXPAND_CONTENT (selected
fields, selected links, as of a boundary, versions; see `fleetwatch.query.rendering`). A
SINGLE_USE result is cut into one set per page, each naming the next page itself, so that
reading a page can delete exactly that page (`PageView.single_use`). A GROUP_BY listing is a
set whose entries are group values, each with the first page of its group (`group_pages`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.index.document import JsonObject

PAGE_PREFIX = "/core/query-page"


@dataclass(frozen=True, slots=True)
class PageView:
    """How a page set's pages are shown, beyond its links and EXPAND_CONTENT."""

    select_terms: tuple[str, ...] = ()
    link_terms: tuple[str, ...] = ()
    expand_links: bool = False
    #: Documents as of this change-log sequence (TIME_SNAPSHOT).
    as_of_seq: int | None = None
    #: Entries are `link?documentVersion=N` (INCLUDE_ALL_VERSIONS).
    versions: bool = False
    #: One page per set, deleted when first read; `next_page` is the following one.
    single_use: bool = False
    next_page: str | None = None
    #: A GROUP_BY listing: the first page of each entry's group (entries are group values).
    group_pages: tuple[str, ...] = ()
    #: The task's scope (Query JSON text): EXPAND_LINKS shows only linked documents in it.
    scope: str | None = None

    @property
    def needs_bodies(self) -> bool:
        """Whether showing a page reads the documents' bodies."""
        return bool(self.select_terms or self.link_terms)

    def to_json(self) -> dict[str, Any]:
        return {
            "selectTerms": list(self.select_terms),
            "linkTerms": list(self.link_terms),
            "expandLinks": self.expand_links,
            "asOfSeq": self.as_of_seq,
            "versions": self.versions,
            "singleUse": self.single_use,
            "nextPage": self.next_page,
            "groupPages": list(self.group_pages),
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PageView:
        return cls(
            select_terms=tuple(raw.get("selectTerms") or ()),
            link_terms=tuple(raw.get("linkTerms") or ()),
            expand_links=bool(raw.get("expandLinks")),
            as_of_seq=raw.get("asOfSeq"),
            versions=bool(raw.get("versions")),
            single_use=bool(raw.get("singleUse")),
            next_page=raw.get("nextPage"),
            group_pages=tuple(raw.get("groupPages") or ()),
            scope=raw.get("scope"),
        )


PLAIN = PageView()


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
    view: PageView = field(default=PLAIN)

    @property
    def page_count(self) -> int:
        return max(1, -(-len(self.links) // self.page_size))

    def page_links(self, number: int) -> list[str]:
        start = number * self.page_size
        return self.links[start : start + self.page_size]

    def navigation(self, number: int) -> JsonObject:
        """nextPageLink / prevPageLink of page `number` (absent at the ends)."""
        nav: JsonObject = {}
        if self.view.single_use:  # one page per set; the one before is gone once read
            if number < 0:  # the task's results: the first page is this set
                nav["nextPageLink"] = page_link(self.id, 0)
            elif self.view.next_page is not None:
                nav["nextPageLink"] = self.view.next_page
            return nav
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
        view: PageView = PLAIN,
        set_id: str | None = None,
    ) -> PageSet:
        page_set = PageSet(
            id=set_id or secrets.token_hex(8),
            task_link=task_link,
            links=links,
            page_size=page_size,
            expand=expand,
            forward_only=forward_only,
            expiration_micros=expiration_micros,
            seq=seq,
            owner_id=owner_id,
            view=view,
        )
        self._sets[page_set.id] = page_set
        return page_set

    def discard(self, set_id: str) -> None:
        """Forget one page set (a single-use page that was read)."""
        self._sets.pop(set_id, None)

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
