"""Plain listings of live documents (query/listing.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.query.listing import Listing, Order, read_fields, read_page
from fleetwatch.query.scope import all_of, any_of, term
from fleetwatch.query.snapshot import snapshot


async def _seed(index: DocumentIndex) -> None:
    # Written one at a time, so update times increase in this order.
    seed: list[tuple[str, str, dict[str, Any]]] = [
        ("/logs/1/b", "log", {"name": "q", "team_id": 1}),
        ("/logs/1/a", "log", {"name": "q", "team_id": 2}),
        ("/logs/1/c", "log", {"name": "other", "team_id": 1}),
        ("/logs/10/a", "log", {"name": "q", "team_id": 1}),
        ("/logs/2/a", "log", {"name": "q", "team_id": 1}),
        ("/queries/2", "query", {"n": 2}),
        ("/queries/1", "query", {"n": 1}),
        ("/queries/3", "query", {"n": 3}),
    ]
    for link, kind, body in seed:
        await index.write(Write(Action.POST, link, kind, body))
    await index.write(Write(Action.DELETE, "/queries/3"))


async def test_kind_in_link_order_without_deleted(index: DocumentIndex) -> None:
    await _seed(index)
    page = await read_page(index.db, Listing(kind="query"))
    assert [link for link, _ in page.documents] == ["/queries/1", "/queries/2"]
    assert page.bodies[0]["n"] == 1
    assert page.total is None


async def test_prefix_terms_newest_first_paged_and_counted(index: DocumentIndex) -> None:
    await _seed(index)
    listing = Listing(link_prefix="/logs/1/", where=term("name", "q"), order=Order.NEWEST)
    first = await read_page(index.db, listing, limit=1, count=True)
    second = await read_page(index.db, listing, limit=1, offset=1, count=True)
    # /logs/10/a and /logs/2/a are outside the prefix; /logs/1/c has another name.
    assert (first.total, second.total) == (2, 2)
    assert [d[0] for d in first.documents + second.documents] == ["/logs/1/a", "/logs/1/b"]


async def test_terms_on_numbers_and_groups(index: DocumentIndex) -> None:
    await _seed(index)
    teams = all_of(term("name", "q"), any_of(term("team_id", 2), term("team_id", 3)))
    page = await read_page(index.db, Listing(kind="log", where=teams), count=True)
    assert [d[0] for d in page.documents] == ["/logs/1/a"]
    assert page.total == 1


async def test_newest_first_in_either_tie_order(index: DocumentIndex) -> None:
    await _seed(index)
    for order in (Order.NEWEST, Order.NEWEST_LINK_DESC):
        page = await read_page(index.db, Listing(kind="query", order=order))
        assert [d[0] for d in page.documents] == ["/queries/1", "/queries/2"], order


async def test_only_documents_written_before_a_time(index: DocumentIndex) -> None:
    await _seed(index)
    times = {
        link: int(body["documentUpdateTimeMicros"])
        for link, body in (await read_page(index.db, Listing(kind="log"))).documents
    }
    cutoff = times["/logs/1/c"]
    links = await read_fields(index.db, Listing(kind="log", updated_before=cutoff), ())
    assert [link for link, fields in links] == sorted(k for k, t in times.items() if t < cutoff)
    assert all(fields == {} for _, fields in links)  # no fields asked: links only
    assert "/logs/1/c" not in dict(links) and "/logs/2/a" not in dict(links)


async def test_reads_through_one_snapshot_agree(index: DocumentIndex) -> None:
    await _seed(index)
    db = index.db
    async with snapshot(db) as (conn, _seq):
        before = await read_page(db, Listing(kind="query"), conn=conn)
        await index.write(Write(Action.POST, "/queries/4", "query", {"n": 4}))
        same = await read_page(db, Listing(kind="query"), conn=conn, count=True)
        fields = await read_fields(db, Listing(kind="query"), ("n",), conn=conn)
    # the snapshot does not see the later write; a fresh read does
    assert same.documents == before.documents and same.total == 2
    assert fields == [("/queries/1", {"n": "1"}), ("/queries/2", {"n": "2"})]
    after = await read_page(db, Listing(kind="query"))
    assert [link for link, _ in after.documents] == ["/queries/1", "/queries/2", "/queries/4"]
