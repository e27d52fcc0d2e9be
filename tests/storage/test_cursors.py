"""Stream cursors: a name's saved position, never moved back (a late save of an older
position by a node that lost its lease is ignored)."""

from __future__ import annotations

from fleetwatch.storage import Database
from fleetwatch.storage.cursors import StreamCursors


async def test_a_cursor_is_saved_loaded_and_never_moves_back(db: Database) -> None:
    cursors = StreamCursors(db)
    assert await cursors.load("destination:siem") is None
    await cursors.save("destination:siem", 10)
    await cursors.save("destination:siem", 25)
    assert await cursors.load("destination:siem") == 25
    await cursors.save("destination:siem", 12)  # an older position, saved late
    assert await cursors.load("destination:siem") == 25
    await cursors.save("destination:other", 3)
    assert await cursors.load("destination:other") == 3
    assert await cursors.load("destination:siem") == 25
