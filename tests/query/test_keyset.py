"""Keyset pages of documents under a prefix, on SQLite and PostgreSQL: order, bounds, and
no gap or duplicate while documents are added during the walk."""

from __future__ import annotations

from typing import Any

import pytest

from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.query import keyset

PREFIX = "/k/1/items/"


async def _put(index: DocumentIndex, link: str, body: dict[str, Any], kind: str = "t:item") -> None:
    await index.write(Write(Action.PUT, link, kind, body))


async def _walk(
    index: DocumentIndex,
    limit: int,
    order: keyset.NumberOrder | None = None,
    between: list[tuple[str, dict[str, Any]]] | None = None,
) -> list[str]:
    """Every link of the prefix, page by page; `between` is written one per page turn."""
    seen: list[str] = []
    after = None
    pending = list(between or [])
    while True:
        page = await keyset.read_page(
            index.db, PREFIX, kind="t:item", limit=limit, after=after, order=order
        )
        assert len(page.documents) <= limit
        assert [d.self_link for d in page.documents] == [p.link for p in page.positions]
        if not page.documents:
            return seen
        seen.extend(d.self_link for d in page.documents)
        after = page.end
        if pending:
            link, body = pending.pop(0)
            await _put(index, link, body)


async def test_link_order_pages_without_gap_or_duplicate_under_inserts(
    index: DocumentIndex,
) -> None:
    for i in range(40):
        await _put(index, f"{PREFIX}{i}", {"n": i})
    # neighbours that share the prefix's text but not the prefix, a deleted one, another kind
    await _put(index, "/k/10/items/1", {"n": 0})
    await _put(index, "/k/1/itemsX", {"n": 0})
    await _put(index, f"{PREFIX}gone", {"n": 0})
    await index.write(Write(Action.DELETE, f"{PREFIX}gone"))
    await _put(index, f"{PREFIX}other-kind", {"n": 0}, kind="t:other")
    original = sorted(f"{PREFIX}{i}" for i in range(40))
    # inserts before and after the cursor while walking
    added = [(f"{PREFIX}{i}a", {"n": i}) for i in (0, 39, 2, 38, 15, 25)]
    seen = await _walk(index, 7, between=added)
    assert len(seen) == len(set(seen)), "a document was listed twice"
    assert set(original) <= set(seen), "a document present throughout was missed"
    assert set(seen) <= set(original) | {link for link, _ in added}
    assert seen == sorted(seen)
    assert await keyset.count(index.db, PREFIX, kind="t:item") == 40 + len(added)


@pytest.mark.parametrize("descending", [False, True])
async def test_number_order_puts_missing_last_and_survives_inserts(
    index: DocumentIndex, descending: bool
) -> None:
    values: dict[str, Any] = {}
    for i in range(30):
        value: Any = [5, 1, 9, 5, 2.5][i % 5] * (i // 5 + 1)  # ties across pages
        if i % 7 == 0:
            value = None  # no stat
        elif i % 11 == 0:
            value = "12"  # a string is not a number here: sorted with the missing
        values[f"{PREFIX}{i:02d}"] = value
        body = {"stats": {} if value is None else {"wall_time_ms": value}}
        await _put(index, f"{PREFIX}{i:02d}", body)
    order = keyset.NumberOrder(("stats", "wall_time_ms"), descending)
    added = [
        (f"{PREFIX}x{i}", {"stats": {"wall_time_ms": v}}) for i, v in enumerate([0, 100, 5, 7])
    ]
    seen = await _walk(index, 4, order=order, between=added)
    assert len(seen) == len(set(seen))
    assert set(values) <= set(seen)
    values.update({link: body["stats"]["wall_time_ms"] for link, body in added})

    def key(link: str) -> tuple[bool, float, str]:
        value = values[link]
        missing = not isinstance(value, int | float)
        number = 0.0 if missing else float(value)
        return (missing, -number if descending else number, link)

    # in order, with each walked document where the order puts it
    assert seen == sorted(seen, key=key)


async def test_offset_and_limit_bounds(index: DocumentIndex) -> None:
    for i in range(10):
        await _put(index, f"{PREFIX}{i}", {"n": i})
    page = await keyset.read_page(index.db, PREFIX, kind="t:item", limit=3, offset=6)
    assert [d.body["n"] for d in page.documents] == [6, 7, 8]
    with pytest.raises(ValueError):
        await keyset.read_page(index.db, PREFIX, limit=0)
