"""How a page of results shows its documents: whole (EXPAND_CONTENT), reduced to the
`selectTerms` (EXPAND_SELECTED_FIELDS), with the links they hold (SELECT_LINKS, EXPAND_LINKS),
as of a boundary (TIME_SNAPSHOT) or as the versions named (INCLUDE_ALL_VERSIONS).

The same code shows a task's inline results and each of its pages, so a page looks like any
other result whatever options made it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.index.history import bodies_at, history_reach, version_bodies
from fleetwatch.query.execution import fetch_bodies
from fleetwatch.query.fields import select_fields
from fleetwatch.query.links import expand_links, select_links
from fleetwatch.query.matcher import compile_query
from fleetwatch.query.pages import PageView
from fleetwatch.query.scope import scope_json
from fleetwatch.query.spec import Query, QuerySpecification, parse_query
from fleetwatch.query.spec_enums import QueryOption
from fleetwatch.query.time_travel import Source, split_version_link, version_link


class PageGone(Exception):
    """A page as of a boundary whose history the change log has trimmed since."""


def view_for(spec: QuerySpecification, source: Source, scope: Query | None = None) -> PageView:
    """The view of a spec's results read from `source`, for a user limited to `scope`."""
    selected = spec.has(QueryOption.EXPAND_SELECTED_FIELDS)
    linked = spec.has(QueryOption.SELECT_LINKS)
    return PageView(
        select_terms=tuple(t.property_name or "" for t in spec.select_terms or ())
        if selected
        else (),
        link_terms=tuple(t.property_name or "" for t in spec.link_terms or ()) if linked else (),
        expand_links=linked and spec.has(QueryOption.EXPAND_LINKS),
        as_of_seq=source.as_of_seq,
        versions=source.versions,
        single_use=spec.has(QueryOption.SINGLE_USE),
        scope=None if scope is None else orjson.dumps(scope_json(scope)).decode(),
    )


async def read_bodies(
    conn: AsyncConnection, view: PageView, entries: Sequence[str]
) -> dict[str, JsonObject]:
    """The bodies of result entries as the view reads them (absent ones left out)."""
    if view.versions:
        pairs = [p for e in entries if (p := split_version_link(e)) is not None]
        found = await version_bodies(conn, pairs)
        return {version_link(*key): body for key, body in found.items()}
    if view.as_of_seq is not None:
        reach = await history_reach(conn)
        if reach.first_micros is not None and reach.first_seq > view.as_of_seq + 1:
            raise PageGone(
                f"the change history this page was read from was trimmed (it now goes back "
                f"to {reach.first_micros}); run the query again with a later boundary"
            )
        return await bodies_at(conn, entries, view.as_of_seq)
    return await fetch_bodies(conn, entries)


async def render(
    conn: AsyncConnection,
    view: PageView,
    entries: Sequence[str],
    *,
    expand: bool,
    bodies: Mapping[str, JsonObject] | None = None,
) -> JsonObject:
    """The `documents`, `selectedLinks*` and `selectedDocuments` of one page of entries
    (`bodies` when the caller has them already)."""
    out: JsonObject = {}
    if not (expand or view.needs_bodies):
        return out
    if bodies is None:
        bodies = await read_bodies(conn, view, entries)
    if expand:
        out["documents"] = {e: bodies[e] for e in entries if e in bodies}
    elif view.select_terms:
        out["documents"] = {
            e: select_fields(bodies[e], view.select_terms) for e in entries if e in bodies
        }
    if view.link_terms:
        selected: dict[str, Any] = select_links(entries, bodies, view.link_terms)
        out.update(selected)
        if view.expand_links:
            found = await expand_links(conn, selected["selectedLinks"])
            if view.scope is not None:  # a link may name a document the user may not see
                visible = compile_query(parse_query(orjson.loads(view.scope), "scope"))
                found = {link: body for link, body in found.items() if visible.matches(body)}
            out["selectedDocuments"] = found
    return out
