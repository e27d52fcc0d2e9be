"""Reading a result page: `GET /core/query-page/{set}-{n}` on any node.

A page set is found in this node's cache or in the store (another node cut it); a SINGLE_USE
page is claimed by deleting its row, so exactly one read of it succeeds across the cluster.
"""

from __future__ import annotations

from fleetwatch.index.document import JsonObject, now_micros
from fleetwatch.query.one_shot import page_results
from fleetwatch.query.pages import PageSet, PageStore
from fleetwatch.query.task_store import TaskStore
from fleetwatch.storage.database import Database


class PageMissing(LookupError):
    """No such page (expired, read already if SINGLE_USE, or never made)."""


async def find_page(pages: PageStore, store: TaskStore, page_id: str) -> tuple[PageSet, int] | None:
    """A page from the cache, or from the store (another node cut it)."""
    found = pages.find(page_id)
    if found is None:
        stored = await store.load_page_set(page_id.rpartition("-")[0])
        if stored is not None and stored.expiration_micros > now_micros():
            pages.add(stored)
            found = pages.find(page_id)
    return found


async def read_page(db: Database, pages: PageStore, store: TaskStore, page_id: str) -> JsonObject:
    """The page as GET shows it; PageMissing, or rendering's PageGone."""
    found = await find_page(pages, store, page_id)
    if found is None:
        raise PageMissing(
            f"no query page {page_id}: it expired with its task, was a SINGLE_USE page "
            "that has been read, or never existed"
        )
    page_set, number = found
    if page_set.view.single_use:  # the first read deletes it, on whichever node
        pages.discard(page_set.id)
        if not await store.claim_page_set(page_set.id):
            raise PageMissing(f"no query page {page_id}: it was SINGLE_USE and has been read")
    async with db.connect() as conn:
        results = await page_results(conn, page_set, number)
    return {
        "documentSelfLink": f"/core/query-page/{page_id}",
        "taskInfo": {"stage": "FINISHED"},
        "results": results,
        "seq": page_set.seq,
        "documentExpirationTimeMicros": page_set.expiration_micros,
        "indexLink": "/core/document-index",
    }
