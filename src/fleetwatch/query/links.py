"""SELECT_LINKS and EXPAND_LINKS: the links a result's documents hold, and their documents.

For each `linkTerms` property of each result document, Xenon reports the link it holds in
`selectedLinksPerDocument` ({document link: {property: link}}) and every distinct link in
`selectedLinks`. A property holding a list of links is reported item by item as
`property.item.N` (Xenon's `buildLinkCollectionItemName`), N counting the non-null strings.
EXPAND_LINKS adds `selectedDocuments` ({link: the linked document}), leaving out links that
name no document (or a deleted one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from fleetwatch.index.document import JsonObject
from fleetwatch.query.spec import COLLECTION_ITEM, FIELD_SEPARATOR


def value_at(body: Mapping[str, Any], name: str) -> Any:
    """The value at a dotted property path, or None."""
    node: Any = body
    for part in name.split(FIELD_SEPARATOR):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def links_of(body: Mapping[str, Any], terms: Sequence[str]) -> dict[str, str]:
    """{property (or `property.item.N`): link} for one document."""
    out: dict[str, str] = {}
    for name in terms:
        value = value_at(body, name)
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, list):
            index = 0
            for item in value:
                if isinstance(item, str):
                    out[f"{name}{FIELD_SEPARATOR}{COLLECTION_ITEM}{FIELD_SEPARATOR}{index}"] = item
                    index += 1
    return out


def select_links(
    entries: Iterable[str], bodies: Mapping[str, Mapping[str, Any]], terms: Sequence[str]
) -> JsonObject:
    """`selectedLinksPerDocument` and `selectedLinks` of these result entries (each
    entry's body is `bodies[entry]`; entries without one are left out)."""
    per_document: dict[str, dict[str, str]] = {}
    selected: set[str] = set()
    for entry in entries:
        body = bodies.get(entry)
        if body is None:
            continue
        found = links_of(body, terms)
        per_document[entry] = found
        selected.update(found.values())
    return {"selectedLinksPerDocument": per_document, "selectedLinks": sorted(selected)}


async def expand_links(conn: AsyncConnection, links: Sequence[str]) -> dict[str, JsonObject]:
    """`selectedDocuments`: the current documents these links name; missing ones omitted."""
    # Imported here: execution builds on the query translation, which this module does not need.
    from fleetwatch.query.execution import fetch_bodies

    bodies = await fetch_bodies(conn, links)
    return {
        link: body
        for link in links
        if (body := bodies.get(link)) is not None and body.get("documentUpdateAction") != "DELETE"
    }
