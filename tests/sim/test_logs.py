"""Result and status log lines, and the bounded buffer the logger sends from."""

from __future__ import annotations

import orjson

from fleetwatch.sim.logs import (
    LineContext,
    LogBuffer,
    log_body,
    result_batch,
    result_events,
    snapshot_lines,
    status_line,
)

CTX = LineContext("web-1", 1759752000, {"host_uuid": "U"})


def test_event_format_has_osquery_fields() -> None:
    added, removed = [b'{"pid":"1"}'], [b'{"pid":"2"}']
    lines = [orjson.loads(x) for x in result_events(CTX, "procs", 0, 3, added, removed)]
    assert [(x["action"], x["columns"]) for x in lines] == [
        ("removed", {"pid": "2"}),
        ("added", {"pid": "1"}),
    ]
    assert lines[0] | {"action": None, "columns": None} == {
        "name": "procs",
        "hostIdentifier": "web-1",
        "calendarTime": "Mon Oct  6 12:00:00 2025 UTC",
        "unixTime": 1759752000,
        "epoch": 0,
        "counter": 3,
        "numerics": False,
        "decorations": {"host_uuid": "U"},
        "columns": None,
        "action": None,
    }


def test_batch_snapshot_and_top_level_decorations() -> None:
    batch = orjson.loads(result_batch(CTX, "q", 0, 1, [b'{"a":"1"}'], []))
    assert batch["diffResults"] == {"removed": [], "added": [{"a": "1"}]}
    snap = orjson.loads(snapshot_lines(CTX, "q", 0, 0, [b'{"a":"1"}'], per_row=False)[0])
    assert snap["snapshot"] == [{"a": "1"}] and snap["action"] == "snapshot"
    top = LineContext("h", 1, {"host_uuid": "U"}, top_level=True)
    event = orjson.loads(result_events(top, "q", 0, 0, [b"{}"], [])[0])
    assert event["host_uuid"] == "U" and "decorations" not in event


def test_status_line_numbers_are_numbers() -> None:
    line = orjson.loads(status_line(CTX, 1, "tls_enroll.cpp", 95, "Failed enrollment"))
    assert line["severity"] == 1 and line["line"] == 95 and line["unixTime"] == 1759752000
    assert line["version"] == "5.23.1" and line["decorations"] == {"host_uuid": "U"}


def test_buffer_takes_oldest_first_and_gives_back() -> None:
    buffer = LogBuffer(limit=5)
    buffer.add_results([b"r1", b"r2"])
    buffer.add_status(b"s1")
    buffer.add_results([b"r3"])
    batch = buffer.take(3)
    assert (batch.results, batch.statuses) == ([b"r1", b"r2"], [b"s1"])
    buffer.give_back(batch.results, [])
    assert buffer.take(10).results == [b"r1", b"r2", b"r3"]
    assert len(buffer) == 0


def test_buffer_drops_oldest_past_its_limit() -> None:
    buffer = LogBuffer(limit=2)
    buffer.add_results([b"1", b"2", b"3"])
    assert buffer.take(10).results == [b"2", b"3"] and buffer.dropped == 1


def test_log_body_is_the_logger_request() -> None:
    body = orjson.loads(log_body("k", "result", [b'{"a":1}', b'{"b":2}']))
    assert body == {"node_key": "k", "log_type": "result", "data": [{"a": 1}, {"b": 2}]}
    assert orjson.loads(log_body("k", "status", [])) == {
        "node_key": "k",
        "log_type": "status",
        "data": [],
    }
