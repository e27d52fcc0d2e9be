"""File destination (JSON lines, rotation) on a real directory; HTTP destination against a
real receiver (batches, retries, refusal)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.forwarding import DestinationError, FileDestination, HttpDestination
from tests.forwarding.receiver import LogReceiver, running_log_receiver


def lines(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"n": i, "pad": "x" * 40}).encode() for i in range(start, start + n)]


async def test_file_destination_appends_json_lines(tmp_path: Path) -> None:
    dest = FileDestination(tmp_path / "out", max_bytes=1 << 20, backups=2)
    await dest.send("result", lines(3))
    await dest.send("result", lines(2, 3))
    await dest.send("status", lines(1))
    result = (tmp_path / "out" / "osquery_result.log").read_text().splitlines()
    assert [json.loads(x)["n"] for x in result] == [0, 1, 2, 3, 4]
    assert len((tmp_path / "out" / "osquery_status.log").read_text().splitlines()) == 1


async def test_file_destination_rotates_and_keeps_backups(tmp_path: Path) -> None:
    dest = FileDestination(tmp_path, max_bytes=200, backups=2)
    for batch in range(6):  # each batch of 3 lines is ~170 bytes: one file per batch
        await dest.send("result", lines(3, batch * 3))
    path = dest.path("result")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["osquery_result.log", "osquery_result.log.1", "osquery_result.log.2"]
    first = [json.loads(x)["n"] for x in path.read_text().splitlines()]
    older = [json.loads(x)["n"] for x in Path(f"{path}.1").read_text().splitlines()]
    oldest = [json.loads(x)["n"] for x in Path(f"{path}.2").read_text().splitlines()]
    assert (oldest, older, first) == ([9, 10, 11], [12, 13, 14], [15, 16, 17])
    no_backups = FileDestination(tmp_path / "nb", max_bytes=200, backups=0)
    await no_backups.send("status", lines(3))
    await no_backups.send("status", lines(3, 3))
    assert [p.name for p in (tmp_path / "nb").iterdir()] == ["osquery_status.log"]


async def test_file_destination_failure_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    dest = FileDestination(blocker, max_bytes=1000, backups=1)
    with pytest.raises(DestinationError, match="cannot write"):
        await dest.send("result", lines(1))


@pytest.fixture
def receiver() -> Iterator[LogReceiver]:
    with running_log_receiver() as running:
        yield running


async def test_http_destination_posts_batches(receiver: LogReceiver) -> None:
    dest = HttpDestination(receiver.endpoint("ok"), timeout=5)
    try:
        await dest.send("result", lines(2))
    finally:
        await dest.close()
    [batch] = receiver.received("ok")
    assert batch["log_type"] == "result" and [x["n"] for x in batch["data"]] == [0, 1]


async def test_http_destination_retries_then_refuses(receiver: LogReceiver) -> None:
    flaky = HttpDestination(receiver.endpoint("flaky", "flaky:2"), timeout=5, retry_base=0.01)
    failing = HttpDestination(receiver.endpoint("down", "fail"), timeout=5, retry_base=0.01)
    try:
        await flaky.send("status", lines(1))
        with pytest.raises(DestinationError, match="HTTP 503"):
            await failing.send("status", lines(1))
    finally:
        await flaky.close()
        await failing.close()
    assert len(receiver.received("flaky")) == 1 and receiver.attempts["flaky"] == 3
    assert receiver.attempts["down"] == 3 and receiver.received("down") == []
