"""A campaign's results as a CSV or NDJSON download, streamed in constant memory.

Both read the results chunk by chunk (`CampaignResults.chunks`) and hand each chunk's bytes
to the response as they are made: memory holds one chunk, whatever the campaign's size.

NDJSON is one result per line, as the JSON pages show it. CSV needs its header (every
column any host answered with) before the first record, so it reads twice: a first pass
collects the columns and which hosts had answered, the second writes the records. A host
whose answer arrived between the passes is written as the first pass saw it (pending or
offline), so the file describes the moment the export began and no record has a column the
header lacks.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import orjson

from fleetwatch.live.result_csv import Columns, csv_header, csv_writer, result_records
from fleetwatch.live.result_pages import CampaignResults, ResultOrder

#: Results read (and held) at once.
CHUNK = 200


async def ndjson_lines(
    results: CampaignResults, order: ResultOrder, chunk: int = CHUNK
) -> AsyncIterator[bytes]:
    """One JSON object per line, one result per host (one write per chunk)."""
    async for part in results.chunks(order, chunk):
        yield b"".join(orjson.dumps(r) + b"\n" for r in part)


async def csv_lines(
    results: CampaignResults, order: ResultOrder, chunk: int = CHUNK
) -> AsyncIterator[bytes]:
    """The header, then one record per row (see result_csv), one write per chunk."""
    columns = Columns()
    answered = _HostSet()
    async for part in results.chunks(order, chunk):
        for result in part:
            if result["status"] in ("complete", "error"):
                columns.add(result)
                answered.add(int(result["host_id"]))
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(csv_header(columns.names))
    async for part in results.chunks(order, chunk):
        for result in part:
            if result["status"] in ("complete", "error") and int(result["host_id"]) not in answered:
                result = _as_unanswered(result)  # answered after the header was made
            writer.writerows(result_records(result, columns.names))
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def _as_unanswered(result: dict[str, object]) -> dict[str, object]:
    return {
        **result,
        "status": "offline" if result.get("queued") else "pending",
        "error": None,
        "rows": [],
    }


class _HostSet:
    """A set of host ids as a bitmap: one bit per id up to the highest (12.5 KB for ids up
    to 100,000), where a set of ints costs about 60 bytes each."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, host_id: int) -> None:
        byte = host_id >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte + 1 - len(self._bits)))
        self._bits[byte] |= 1 << (host_id & 7)

    def __contains__(self, host_id: int) -> bool:
        byte = host_id >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (host_id & 7)))
