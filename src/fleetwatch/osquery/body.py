"""Reading an agent's request body: size-bounded, gzip-aware, JSON object or a clear error.

The limit applies before and after decompression, read incrementally, so neither a huge
body nor a gzip bomb can take the server's memory.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

#: The ASGI header list: (lower-case name, value) pairs.
Headers = list[tuple[bytes, bytes]]


class BodyError(Exception):
    """The body cannot be used; `status` is 400 or 413 and the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _too_large(limit: int, what: str) -> BodyError:
    return BodyError(413, f"request body too large: {what} exceeds {limit} bytes")


def header(request: Request, name: bytes) -> str | None:
    """One request header by its lower-case name, or None (see `header_in`)."""
    return header_in(request.scope["headers"], name)


def header_in(headers: Headers, name: bytes) -> str | None:
    """One header of an ASGI header list by its lower-case name, or None.

    A scan of the list (names arrive lower-cased): on the check-in path this is cheaper than
    building Starlette's `Headers` and raising KeyError for absent headers.
    """
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The raw (decompressed) body, at most `limit` bytes either way."""
    return await read_raw(request.scope["headers"], request.receive, limit)


async def read_raw(headers: Headers, receive: Receive, limit: int) -> bytes:
    """`read_body` from an ASGI header list and receive channel."""
    reader = BodyReader(headers, limit)
    more = True
    # The ASGI messages as Starlette's `Request.stream()` reads them, without a generator.
    while more:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnect()
        if kind != "http.request":
            continue
        more = message.get("more_body", False)
        chunk: bytes = message.get("body", b"")
        if chunk:
            reader.feed(chunk)
    return reader.finish()


class BodyReader:
    """A body read chunk by chunk, bounded by `limit` before and after decompression.

    The constructor checks the headers (a declared Content-Length over the limit, an
    unsupported Content-Encoding), `feed` each chunk as it arrives, `finish` the body;
    each raises BodyError when the body cannot be used. Shared by the ASGI reader above and
    the agent protocol (fleetwatch.osquery.protocol), which reads bodies without ASGI.
    """

    __slots__ = ("limit", "encoding", "inflater", "raw_size", "out_size", "chunks")

    def __init__(self, headers: Headers, limit: int) -> None:
        declared = header_in(headers, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit, "the declared Content-Length")
        encoding = (header_in(headers, b"content-encoding") or "").strip().lower()
        if encoding not in ("", "identity", "gzip", "deflate"):
            raise BodyError(400, f"unsupported Content-Encoding {encoding!r}; send gzip or none")
        self.limit = limit
        self.encoding = encoding
        # wbits 47 auto-detects gzip or zlib framing.
        compressed = encoding in ("gzip", "deflate")
        self.inflater = zlib.decompressobj(wbits=47) if compressed else None
        self.raw_size = 0
        self.out_size = 0
        self.chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body as it came over the wire."""
        limit = self.limit
        self.raw_size += len(chunk)
        if self.raw_size > limit:
            raise _too_large(limit, "the body")
        inflater = self.inflater
        if inflater is None:
            self.chunks.append(chunk)
            return
        try:
            piece = inflater.decompress(chunk, limit - self.out_size + 1)
            while True:
                self.out_size += len(piece)
                if self.out_size > limit:
                    raise _too_large(limit, "the decompressed body")
                self.chunks.append(piece)
                if not inflater.unconsumed_tail:
                    break
                piece = inflater.decompress(inflater.unconsumed_tail, limit - self.out_size + 1)
        except zlib.error as exc:
            raise BodyError(400, f"the body is not valid {self.encoding} data ({exc})") from exc

    def finish(self) -> bytes:
        """The whole (decompressed) body, once every chunk was fed."""
        inflater = self.inflater
        chunks = self.chunks
        if inflater is not None:
            encoding = self.encoding
            try:
                tail = inflater.flush()
            except zlib.error as exc:
                raise BodyError(400, f"the body is not valid {encoding} data ({exc})") from exc
            if self.out_size + len(tail) > self.limit:
                raise _too_large(self.limit, "the decompressed body")
            chunks.append(tail)
            if not inflater.eof:
                raise BodyError(400, f"the {encoding} body is truncated")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body parsed as a JSON object (osquery always sends one)."""
    return parse_json_object(await read_body(request, limit))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A read body parsed as a JSON object, or a BodyError saying why not."""
    if not raw.strip():
        raise BodyError(400, "empty body: send a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BodyError(400, "the body must be a JSON object")
    if b"\\u0000" in raw:
        # PostgreSQL stores no NUL in text or jsonb; refusing would make osquery resend the
        # batch forever, so NUL becomes U+FFFD (the same on both backends).
        cleaned: dict[str, Any] = without_nul(value)
        return cleaned
    return value


def without_nul(value: Any) -> Any:
    """`value` with every NUL character in its strings (and keys) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value
