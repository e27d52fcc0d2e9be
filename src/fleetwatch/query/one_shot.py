"""A one-shot query task's run: its results, and the result pages it leaves behind.

Everything is read in the caller's one snapshot (`fleetwatch.query.snapshot`): the rows
(`time_travel.source_for`: the documents, as of a boundary, or every version), the matching
entries in result order, and, where the results show them, the bodies (`rendering`). Then:
COUNT gives a count (with GROUP_BY, one per group: `group_counts`); GROUP_BY one page set
per group (`group_by`); a `resultLimit` without TOP_RESULTS a page set (with SINGLE_USE one
per page, each deleted when read); else the results inline. Pages are shown later by
`page_results` with the same rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.query import execution, group_by
from fleetwatch.query.group_counts import GROUP_COUNTS, count_bodies, count_groups
from fleetwatch.query.pages import PageSet, PageStore, PageView, page_link
from fleetwatch.query.rendering import read_bodies, render, view_for
from fleetwatch.query.spec import Query, QuerySpecification
from fleetwatch.query.spec_enums import QueryOption
from fleetwatch.query.time_travel import Source, matching_versions, source_for


@dataclass(frozen=True, slots=True)
class PageOwner:
    """What every page set of one run shares."""

    task_link: str
    expand: bool
    forward_only: bool
    expiration_micros: int
    seq: int
    owner_id: int | None


@dataclass
class Run:
    """A one-shot run's results and the page sets to keep."""

    results: JsonObject
    page_sets: list[PageSet] = field(default_factory=list)


async def run(
    conn: AsyncConnection,
    spec: QuerySpecification,
    dialect: str,
    pages: PageStore,
    owner: PageOwner,
    scope: Query | None = None,
) -> Run:
    """Run `spec` (already restricted to the user's `scope`) once in `conn`'s snapshot;
    `scope` also limits the linked documents EXPAND_LINKS shows."""
    source = await source_for(conn, spec)
    view = view_for(spec, source, scope)
    if spec.has(QueryOption.COUNT) and spec.has(QueryOption.GROUP_BY):
        return Run(await _group_counts(conn, spec, dialect, source))
    if spec.has(QueryOption.COUNT):
        if source.versions:
            count = len((await matching_versions(conn, spec, dialect, source))[0])
        else:
            count = await execution.count_matches(conn, spec, dialect, source.table)
        return Run({"documentLinks": [], "documentCount": count})
    grouped = spec.has(QueryOption.GROUP_BY)
    paged = execution.is_paged(spec)
    # Bodies are read with the entries when they are shown inline or decide the groups.
    inline = not paged and (owner.expand or view.needs_bodies)
    limit = spec.result_limit if spec.has(QueryOption.TOP_RESULTS) and not paged else None
    entries, bodies = await _matching(conn, spec, dialect, source, limit, grouped or inline)
    if grouped:
        return _grouped(spec, entries, bodies, view, pages, owner)
    if paged:
        assert spec.result_limit is not None
        sets = cut(pages, entries, spec.result_limit, view, owner)
        results: JsonObject = {"documentLinks": [], "documentCount": len(entries)}
        results.update(sets[0].navigation(-1))
        return Run(results, sets)
    results = {"documentLinks": entries, "documentCount": len(entries)}
    results.update(await render(conn, view, entries, expand=owner.expand, bodies=bodies))
    return Run(results)


async def _matching(
    conn: AsyncConnection,
    spec: QuerySpecification,
    dialect: str,
    source: Source,
    limit: int | None,
    with_bodies: bool,
) -> tuple[list[str], dict[str, Any]]:
    if source.versions:
        return await matching_versions(conn, spec, dialect, source, limit, with_bodies=with_bodies)
    if with_bodies:
        return await execution.matching_documents(conn, spec, dialect, limit, source.table)
    return await execution.matching_links(conn, spec, dialect, limit, source.table), {}


def cut(
    pages: PageStore,
    entries: list[str],
    page_size: int,
    view: PageView,
    owner: PageOwner,
) -> list[PageSet]:
    """Page sets of `entries`: one, or with SINGLE_USE one per page (the first first)."""
    if not view.single_use:
        return [_create(pages, entries, page_size, view, owner)]
    chunks = [entries[i : i + page_size] for i in range(0, len(entries), page_size)] or [[]]
    sets: list[PageSet] = []
    following: str | None = None
    for chunk in reversed(chunks):  # each page names the next, so make the last first
        made = _create(pages, chunk, page_size, replace(view, next_page=following), owner)
        following = page_link(made.id, 0)
        sets.append(made)
    sets.reverse()
    return sets


def _create(
    pages: PageStore, entries: list[str], page_size: int, view: PageView, owner: PageOwner
) -> PageSet:
    return pages.create(
        owner.task_link,
        entries,
        page_size,
        expand=owner.expand,
        forward_only=owner.forward_only,
        expiration_micros=owner.expiration_micros,
        seq=owner.seq,
        owner_id=owner.owner_id,
        view=view,
    )


def _grouped(
    spec: QuerySpecification,
    entries: list[str],
    bodies: dict[str, Any],
    view: PageView,
    pages: PageStore,
    owner: PageOwner,
) -> Run:
    assert spec.group_by_term is not None and spec.group_by_term.property_name is not None
    groups = group_by.group_entries(entries, bodies, spec.group_by_term.property_name)
    values = group_by.ordered_groups(list(groups), spec)
    sets: list[PageSet] = []
    firsts: list[str] = []
    for value in values:
        members = groups[value]
        made = cut(pages, members, spec.result_limit or max(1, len(members)), view, owner)
        sets.extend(made)
        firsts.append(page_link(made[0].id, 0))
    limit = group_by.group_limit(spec)
    results: JsonObject = {
        "documentLinks": [],
        "documentCount": len(entries),
        "nextPageLinksPerGroup": dict(zip(values[:limit], firsts[:limit], strict=True)),
    }
    if len(values) > limit:
        listing = pages.create(
            owner.task_link,
            values,
            limit,
            expand=False,
            forward_only=owner.forward_only,
            expiration_micros=owner.expiration_micros,
            seq=owner.seq,
            owner_id=owner.owner_id,
            view=PageView(group_pages=tuple(firsts)),
        )
        sets.append(listing)
        results["nextPageLink"] = page_link(listing.id, 1)
    return Run(results, sets)


async def page_results(conn: AsyncConnection, page_set: PageSet, number: int) -> JsonObject:
    """The `results` of page `number` of a page set."""
    entries = page_set.page_links(number)
    view = page_set.view
    if view.group_pages:
        start = number * page_set.page_size
        firsts = view.group_pages[start : start + len(entries)]
        results: JsonObject = {
            "documentLinks": [],
            "nextPageLinksPerGroup": dict(zip(entries, firsts, strict=True)),
        }
    else:
        results = {"documentLinks": entries, "documentCount": len(entries)}
        results.update(await render(conn, view, entries, expand=page_set.expand))
    results.update(page_set.navigation(number))
    return results


__all__ = ["PageOwner", "Run", "cut", "page_results", "read_bodies", "run"]


async def _group_counts(
    conn: AsyncConnection, spec: QuerySpecification, dialect: str, source: Source
) -> JsonObject:
    """GROUP_BY + COUNT: how many matching documents (or versions) each group has."""
    assert spec.group_by_term is not None
    if source.versions:
        _, bodies = await matching_versions(conn, spec, dialect, source, with_bodies=True)
        counts = count_bodies(bodies, spec.group_by_term.property_name or "")
    else:
        counts = await count_groups(conn, spec, dialect, source.table)
    return {"documentLinks": [], "documentCount": sum(counts.values()), GROUP_COUNTS: counts}
