"""Each destination type's wire format against a real receiver on 127.0.0.1 (NDJSON over
HTTP, Splunk HEC, Elasticsearch bulk, osquery log batches, rotated files), and how a sink
tells a retryable failure from a refusal for good."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetwatch.destinations import (
    BulkSink,
    DestinationError,
    DestinationRejected,
    Event,
    FileSink,
    HecSink,
    HttpSink,
    LogBatchSink,
    Refused,
    dumps,
)
from fleetwatch.outbound import OutboundGuard, parse_networks
from tests.receiver import BULK, HEC, LOGS, NDJSON, Receiver, running_receiver

LOOPBACK = OutboundGuard(parse_networks("127.0.0.0/8"))
LIMITS = httpx.Limits(max_connections=2)


def events(n: int, start: int = 0, source: str = "campaign") -> list[Event]:
    return [
        Event(source, f"id-{i}", dumps({"n": i, "pad": "x" * 40}), 1_800_000_000 + i, f"h{i}")
        for i in range(start, start + n)
    ]


def client(timeout: float = 5.0) -> httpx.AsyncClient:
    return LOOPBACK.client(timeout, LIMITS)


@pytest.fixture
def ndjson() -> Iterator[Receiver]:
    with running_receiver(NDJSON) as running:
        yield running


@pytest.fixture
def hec() -> Iterator[Receiver]:
    with running_receiver(HEC) as running:
        yield running


@pytest.fixture
def bulk() -> Iterator[Receiver]:
    with running_receiver(BULK) as running:
        yield running


async def test_file_sink_appends_json_lines_per_source(tmp_path: Path) -> None:
    sink = FileSink(lambda source: tmp_path / "out" / f"{source}.log", 1 << 20, 2)
    await sink.send(events(3))
    await sink.send(events(2, 3) + events(1, source="status"))
    lines = (tmp_path / "out" / "campaign.log").read_text().splitlines()
    assert [json.loads(x)["n"] for x in lines] == [0, 1, 2, 3, 4]
    assert len((tmp_path / "out" / "status.log").read_text().splitlines()) == 1


async def test_file_sink_rotates_and_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    sink = FileSink(lambda _source: path, max_bytes=200, backups=2)
    for batch in range(6):  # each batch of 3 lines is ~170 bytes: one file per batch
        await sink.send(events(3, batch * 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.log",
        "events.log.1",
        "events.log.2",
    ]

    def ns(p: Path) -> list[int]:
        return [json.loads(x)["n"] for x in p.read_text().splitlines()]

    assert (ns(Path(f"{path}.2")), ns(Path(f"{path}.1")), ns(path)) == (
        [9, 10, 11],
        [12, 13, 14],
        [15, 16, 17],
    )
    no_backups = FileSink(lambda _source: tmp_path / "nb" / "x.log", max_bytes=200, backups=0)
    await no_backups.send(events(3))
    await no_backups.send(events(3, 3))
    assert [p.name for p in (tmp_path / "nb").iterdir()] == ["x.log"]


async def test_file_sink_failure_is_retryable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sink = FileSink(lambda _source: blocker / "x.log", max_bytes=1000, backups=1)
    with pytest.raises(DestinationError, match="cannot write") as caught:
        await sink.send(events(1))
    assert caught.value.retryable


async def test_http_sink_posts_ndjson_lines_with_bearer_token(ndjson: Receiver) -> None:
    sink = HttpSink(ndjson.endpoint("lines"), client(), "s3cret")
    try:
        assert await sink.send(events(3)) is None
    finally:
        await sink.close()
    assert [x["n"] for x in ndjson.records("lines")] == [0, 1, 2]
    assert ndjson.headers["lines"]["authorization"] == "Bearer s3cret"
    assert ndjson.headers["lines"]["content-type"] == "application/x-ndjson"


async def test_http_sink_sorts_failures(ndjson: Receiver) -> None:
    """5xx and a timeout are retried; a 4xx other than 401/403/408/429 is a refusal."""
    down = HttpSink(ndjson.endpoint("down", "fail"), client())
    stuck = HttpSink(ndjson.endpoint("stuck", "hang"), client(timeout=0.3))
    missing = HttpSink(ndjson.url + "/nowhere", client())
    try:
        with pytest.raises(DestinationError, match="HTTP 503") as caught:
            await down.send(events(1))
        assert caught.value.retryable
        with pytest.raises(DestinationError, match="did not answer in time") as caught:
            await stuck.send(events(1))
        assert caught.value.retryable
        with pytest.raises(DestinationRejected, match="HTTP 404") as caught:
            await missing.send(events(1))
        assert not caught.value.retryable
    finally:
        for sink in (down, stuck, missing):
            await sink.close()
    assert ndjson.records("down") == [] and ndjson.records("stuck") == []


async def test_http_sink_checks_the_address_like_a_webhook(ndjson: Receiver) -> None:
    guarded = OutboundGuard()  # nothing allowed: 127.0.0.1 is loopback
    sink = HttpSink(ndjson.endpoint("lines"), guarded.client(5, LIMITS))
    try:
        with pytest.raises(DestinationError, match="may not be called") as caught:
            await sink.send(events(1))
        assert caught.value.retryable  # the operator may allow it (outbound_allow)
    finally:
        await sink.close()
    assert ndjson.attempts.get("lines") is None  # never reached the receiver


async def test_log_batch_sink_posts_one_body_per_log_type_run() -> None:
    with running_receiver(LOGS) as logs:
        sink = LogBatchSink(logs.endpoint("fleet"), client())
        try:
            await sink.send(events(2, source="result") + events(1, 2, source="status"))
        finally:
            await sink.close()
        bodies = logs.bodies("fleet")
    assert [(b["log_type"], [x["n"] for x in b["data"]]) for b in bodies] == [
        ("result", [0, 1]),
        ("status", [2]),
    ]


async def test_hec_sink_sends_event_json_with_splunk_token(hec: Receiver) -> None:
    url = hec.endpoint("siem")
    hec.authorization["siem"] = "Splunk good-token"
    sink = HecSink(url, client(), "good-token", "osquery")
    wrong = HecSink(url, client(), "wrong-token", None)
    try:
        assert await sink.send(events(2)) is None
        with pytest.raises(DestinationError, match="HTTP 403") as caught:
            await wrong.send(events(1))
        assert caught.value.retryable  # a token the operator fixes; kept until retention
    finally:
        await sink.close()
        await wrong.close()
    assert hec.records("siem") == [
        {
            "time": 1_800_000_000 + i,
            "source": "fleetwatch",
            "sourcetype": "fleetwatch:campaign",
            "host": f"h{i}",
            "index": "osquery",
            "event": {"n": i, "pad": "x" * 40},
        }
        for i in range(2)
    ]


async def test_bulk_sink_indexes_with_deterministic_ids(bulk: Receiver) -> None:
    sink = BulkSink(bulk.endpoint("es"), client(), "api-key", "fleet-results")
    try:
        assert await sink.send(events(3)) is None
        assert await sink.send(events(2)) is None  # a repeat overwrites
    finally:
        await sink.close()
    assert bulk.headers["es"]["authorization"] == "ApiKey api-key"
    actions = [action for action, _ in bulk.records("es")]
    assert len(actions) == 5
    assert actions[0] == {"index": {"_index": "fleet-results", "_id": "id-0"}}
    assert {k: v["n"] for k, v in bulk.documents("es").items()} == {
        "id-0": 0,
        "id-1": 1,
        "id-2": 2,
    }


async def test_bulk_sink_item_failures(bulk: Receiver) -> None:
    """A 429 item makes the batch retried; a mapping error is that item refused for good."""
    busy = BulkSink(bulk.endpoint("busy", "busy_items:1"), client(), None, "i")
    rejecting = BulkSink(bulk.endpoint("strict", "reject_items:1"), client(), None, "i")
    try:
        with pytest.raises(DestinationError, match="429") as caught:
            await busy.send(events(2))
        assert caught.value.retryable
        assert await busy.send(events(2)) is None
        refused = await rejecting.send(events(3))
    finally:
        await busy.close()
        await rejecting.close()
    assert sorted(bulk.documents("busy")) == ["id-0", "id-1"]
    assert isinstance(refused, Refused) and refused.count == 1
    assert "mapper_parsing_exception" in refused.reason
    assert sorted(bulk.documents("strict")) == ["id-0", "id-2"]


async def test_a_file_sink_without_a_file_for_a_source_refuses_for_good(tmp_path: Path) -> None:
    names = {"result": "osquery_result.log"}
    sink = FileSink(lambda source: tmp_path / names[source], 1 << 20, 1)
    with pytest.raises(DestinationRejected, match="no file for 'campaign' events"):
        await sink.send([Event("campaign", "1-1-0", b"{}", 0.0)])
