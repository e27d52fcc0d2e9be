"""User documents in the index: `/docs/{collection}`, like Xenon's example services.

A document of collection C has `documentKind` `docs:C` and lives at `/docs/C/{id}`.
POST creates (a given `documentSelfLink` or a generated id; 409 if it exists), GET reads,
PUT replaces, PATCH merges the given fields (null fields are ignored), DELETE removes and
answers with the last state (`documentUpdateAction` DELETE). Built-in `document*` fields
in a body are ignored, except `documentExpirationTimeMicros`, so a client may send back
what it read. Every write is a change in the log: continuous queries see it.
User documents are not scoped to teams: they need a global role (reads) and the global
maintainer or admin role (writes).
"""

from __future__ import annotations

import re
import uuid

import orjson
from fastapi import APIRouter, Query, Request

from fleetwatch.api.auth import CurrentUser
from fleetwatch.api.deps import ServicesDep
from fleetwatch.api.errors import ApiError
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.users import User
from fleetwatch.index import (
    Action,
    DocumentExists,
    DocumentIndexError,
    DocumentNotFound,
    InvalidWrite,
    VersionConflict,
    Write,
)
from fleetwatch.index.document import BUILTIN_FIELDS, EXPIRATION, JsonObject
from fleetwatch.query.listing import Listing, read_page
from fleetwatch.services import Services

router = APIRouter(prefix="/docs", tags=["documents"])

#: Largest accepted document body.
MAX_DOCUMENT_BODY = 1024 * 1024
#: Links listed per GET of a collection.
MAX_LIST = 10_000
_NAME = re.compile(r"^[A-Za-z0-9._~-]{1,200}$")
#: Retries of a PUT/PATCH that raced another write to the same document.
_RETRIES = 5


def kind_of(collection: str) -> str:
    return f"docs:{collection}"


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value) or value in (".", ".."):
        raise ApiError(400, f"{what} {value!r}: use 1-200 letters, digits, '.', '_', '~' or '-'")
    return value


async def _body(request: Request) -> JsonObject:
    raw = await request.body()
    if len(raw) > MAX_DOCUMENT_BODY:
        raise ApiError(413, f"body: larger than {MAX_DOCUMENT_BODY} bytes")
    if not raw:
        raise ApiError(400, "body: expected a JSON object, got an empty body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ApiError(400, "body: expected a JSON object with the document's fields")
    return value


def _fields(body: JsonObject, collection: str, link: str | None) -> JsonObject:
    """The writable fields of a body (and its expiry); 400 for a contradicting built-in."""
    kind = body.get("documentKind")
    if kind is not None and kind != kind_of(collection):
        raise ApiError(
            400, f"documentKind: documents of /docs/{collection} have kind {kind_of(collection)!r}"
        )
    given = body.get("documentSelfLink")
    if link is not None and given is not None and given != link:
        raise ApiError(400, f"documentSelfLink: {given!r} does not match the path {link!r}")
    expiration = body.get(EXPIRATION)
    if expiration is not None and (
        isinstance(expiration, bool) or not isinstance(expiration, int) or expiration < 0
    ):
        raise ApiError(
            400, f"{EXPIRATION}: expected a non-negative integer (microseconds since the epoch)"
        )
    fields = {k: v for k, v in body.items() if k not in BUILTIN_FIELDS}
    if expiration is not None:
        fields[EXPIRATION] = expiration  # 0 clears it
    return fields


def _error(exc: DocumentIndexError) -> ApiError:
    if isinstance(exc, DocumentNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, DocumentExists | VersionConflict):
        return ApiError(409, str(exc))
    if isinstance(exc, InvalidWrite):
        return ApiError(400, str(exc))
    return ApiError(400, str(exc))


async def _write(services: Services, write: Write) -> JsonObject:
    try:
        change = await services.index.write(write)
    except DocumentIndexError as exc:
        raise _error(exc) from None
    assert change is not None
    return change.body


def _may_write(user: User) -> None:
    """Observers read: writing documents needs the global maintainer (or admin) role."""
    Access(user).require_global("maintainer", "writing documents")


@router.post("/{collection}")
async def create_document(
    collection: str, request: Request, user: CurrentUser, services: ServicesDep
) -> JsonObject:
    """Create a document (its id from `documentSelfLink`, or generated); 409 if it exists."""
    _may_write(user)
    _check_name(collection, "collection")
    body = await _body(request)
    base = f"/docs/{collection}/"
    given = body.get("documentSelfLink")
    if given is None:
        link = base + uuid.uuid4().hex
    elif not isinstance(given, str):
        raise ApiError(400, "documentSelfLink: expected a string (an id or a path)")
    else:
        doc_id = given[len(base) :] if given.startswith(base) else given
        if doc_id.startswith("/"):
            raise ApiError(400, f"documentSelfLink: {given!r} must be under {base} (or an id)")
        link = base + _check_name(doc_id, "documentSelfLink id")
    fields = _fields({**body, "documentSelfLink": None}, collection, None)
    return await _write(services, Write(Action.POST, link, kind_of(collection), fields))


@router.get("/{collection}")
async def list_documents(
    collection: str,
    user: CurrentUser,
    services: ServicesDep,
    expand: bool = Query(False, description="include the documents, by link"),
    limit: int = Query(MAX_LIST, ge=1, le=MAX_LIST),
) -> JsonObject:
    """The links of a collection's live documents (`expand=true` adds the documents)."""
    _check_name(collection, "collection")
    found = await read_page(services.db, Listing(kind=kind_of(collection)), limit=limit)
    rows = found.documents
    result: JsonObject = {"documentLinks": [r[0] for r in rows], "documentCount": len(rows)}
    if expand:
        result["documents"] = dict(rows)
    return result


async def _current(services: Services, collection: str, doc_id: str) -> tuple[str, int]:
    _check_name(collection, "collection")
    _check_name(doc_id, "id")
    link = f"/docs/{collection}/{doc_id}"
    doc = await services.index.get(link)
    if doc is None or doc.kind != kind_of(collection):
        raise ApiError(404, f"no document at {link}")
    return link, doc.version


@router.get("/{collection}/{doc_id}")
async def get_document(
    collection: str, doc_id: str, user: CurrentUser, services: ServicesDep
) -> JsonObject:
    _check_name(collection, "collection")
    _check_name(doc_id, "id")
    link = f"/docs/{collection}/{doc_id}"
    doc = await services.index.get(link)
    if doc is None or doc.kind != kind_of(collection):
        raise ApiError(404, f"no document at {link}")
    return doc.body


async def _update(
    services: Services, collection: str, doc_id: str, body: JsonObject, action: Action
) -> JsonObject:
    """PUT or PATCH an existing document, retrying if another write raced it."""
    for _ in range(_RETRIES):
        link, version = await _current(services, collection, doc_id)
        fields = _fields(body, collection, link)
        try:
            change = await services.index.write(
                Write(action, link, body=fields, expected_version=version)
            )
        except VersionConflict:
            continue
        except DocumentIndexError as exc:
            raise _error(exc) from None
        assert change is not None
        return change.body
    raise ApiError(409, f"/docs/{collection}/{doc_id} is being changed concurrently; retry")


@router.put("/{collection}/{doc_id}")
async def put_document(
    collection: str, doc_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> JsonObject:
    """Replace a document's fields (404 if it does not exist: create it with POST)."""
    _may_write(user)
    return await _update(services, collection, doc_id, await _body(request), Action.PUT)


@router.patch("/{collection}/{doc_id}")
async def patch_document(
    collection: str, doc_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> JsonObject:
    """Merge the given fields into a document (null fields are ignored, as in Xenon)."""
    _may_write(user)
    return await _update(services, collection, doc_id, await _body(request), Action.PATCH)


@router.delete("/{collection}/{doc_id}")
async def delete_document(
    collection: str, doc_id: str, user: CurrentUser, services: ServicesDep
) -> JsonObject:
    """Delete a document; answers with its last state (`documentUpdateAction` DELETE)."""
    _may_write(user)
    link, _ = await _current(services, collection, doc_id)
    return await _write(services, Write(Action.DELETE, link))
