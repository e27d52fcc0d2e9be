"""Comparing two campaigns' answers: whole rows, as multisets, host by host."""

from __future__ import annotations

from typing import Any

from fleetwatch.live.diff import compare


def answer(host_id: int, *rows: dict[str, str]) -> dict[str, Any]:
    return {"host_id": host_id, "hostname": f"h{host_id}", "status": "complete", "rows": list(rows)}


def test_rows_are_compared_whole_and_counted() -> None:
    a, b, c = {"x": "1", "y": "a"}, {"x": "1", "y": "b"}, {"y": "a", "x": "1"}
    mine = {1: answer(1, a, a, b), 2: answer(2, a), 3: answer(3)}
    theirs = {1: answer(1, c), 2: answer(2, c), 4: answer(4, b)}
    assert compare(mine, theirs) == {
        # one `a` is matched by the reordered `c`; the second `a` and `b` are new
        "hosts": [{"host_id": 1, "hostname": "h1", "added": [a, b], "removed": []}],
        "only_in_campaign": [3],
        "only_in_other": [4],
    }
    swapped = compare(theirs, mine)
    assert swapped["hosts"] == [{"host_id": 1, "hostname": "h1", "added": [], "removed": [a, b]}]
    assert (swapped["only_in_campaign"], swapped["only_in_other"]) == ([4], [3])


def test_a_row_that_changes_one_column_is_removed_and_added() -> None:
    before = answer(1, {"name": "sshd", "version": "8.9"})
    after = answer(1, {"name": "sshd", "version": "9.6"})
    assert compare({1: after}, {1: before})["hosts"] == [
        {
            "host_id": 1,
            "hostname": "h1",
            "added": [{"name": "sshd", "version": "9.6"}],
            "removed": [{"name": "sshd", "version": "8.9"}],
        }
    ]
    assert compare({1: after}, {1: after}) == {
        "hosts": [],
        "only_in_campaign": [],
        "only_in_other": [],
    }
