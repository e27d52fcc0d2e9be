"""EXPAND_SELECTED_FIELDS: documents that carry only the `selectTerms` fields.

Each document keeps the selected properties it has (a dotted name keeps that nested value,
inside its parents) and its `documentSelfLink`, so a client can still tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetwatch.index.document import SELF_LINK, JsonObject
from fleetwatch.query.links import value_at
from fleetwatch.query.spec import FIELD_SEPARATOR

_MISSING = object()


def select_fields(body: Mapping[str, Any], names: Sequence[str]) -> JsonObject:
    """`body` reduced to `names` (and documentSelfLink)."""
    out: JsonObject = {}
    if SELF_LINK in body:
        out[SELF_LINK] = body[SELF_LINK]
    for name in names:
        parts = name.split(FIELD_SEPARATOR)
        value = _lookup(body, parts)
        if value is _MISSING:
            continue
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def _lookup(body: Mapping[str, Any], parts: Sequence[str]) -> Any:
    node: Any = body
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


__all__ = ["select_fields", "value_at"]
