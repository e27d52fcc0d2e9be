"""A follower's steps over a real change log (SQLite and PostgreSQL) and a recording sink:
only results naming the destination are sent, in log order, and the cursor saved once they
were accepted; a refusal for good is counted and passed; rows past the retention and changes
trimmed from the log before delivery are counted, never silent; a node without the lease
sends nothing. A large campaign goes batch by batch, each acknowledged batch's cursor saved,
so a restart resends at most the batch that was not acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from fleetwatch.destinations import (
    DestinationError,
    DestinationRejected,
    Event,
    FeedBatch,
    Follower,
    Lane,
    Refused,
)
from fleetwatch.destinations.follower import POLL_FLOOR
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.index.retention import ChangeLogRetention
from fleetwatch.live.campaign_destinations import CampaignResults
from fleetwatch.live.campaign_docs import CAMPAIGN_KIND, RESULT_KIND, campaign_link, result_link
from fleetwatch.storage.cursors import StreamCursors


@dataclass
class Recorder:
    """A sink that records what it accepted and fails as told, one answer per send."""

    answers: list[Exception | None] = field(default_factory=list)
    accepted: list[list[dict[str, object]]] = field(default_factory=list)

    async def send(self, events: Sequence[Event]) -> Refused | None:
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        self.accepted.append([orjson.loads(e.line) for e in events])
        return None

    async def close(self) -> None:
        return None


@dataclass
class Switch:
    """A lease switched by the test."""

    held: bool = True
    token: int = 1


async def store(index: DocumentIndex, campaign: int, host: int, rows: int, *names: str) -> None:
    body = {"id": campaign, "query": f"SELECT {campaign}", "query_id": None}
    await index.apply([Write(Action.PUT, campaign_link(campaign), CAMPAIGN_KIND, body)])
    result = {
        "campaign_id": campaign,
        "host_id": host,
        "hostname": f"h{host}",
        "rows": [{"n": str(i)} for i in range(rows)],
    }
    if names:
        result["destinations"] = list(names)
    await index.apply([Write(Action.POST, result_link(campaign, host), RESULT_KIND, result)])


def follower(index: DocumentIndex, sink: Recorder, lease: Switch, **lane: float) -> Follower:
    return Follower(
        Lane("siem", sink, batch_size=2, **lane),  # type: ignore[arg-type]
        CampaignResults(index),
        StreamCursors(index.db),
        lease,
        read_limit=10,
    )


def sent(sink: Recorder) -> list[tuple[object, object, object]]:
    return [(e["campaign_id"], e["host_id"], e["row_index"]) for b in sink.accepted for e in b]


async def test_results_naming_the_destination_are_sent_in_order_and_acknowledged(
    index: DocumentIndex,
) -> None:
    sink, lease = Recorder(), Switch()
    first = follower(index, sink, lease)
    await first.step()  # a new destination starts at the end of the log
    start = first.cursor
    assert start is not None
    await store(index, 1, 1, 3, "siem")
    await store(index, 1, 2, 1, "other")  # another destination's
    await store(index, 2, 1, 1, "other", "siem")
    sink.answers = [None, DestinationError("HTTP 503")]  # the second batch fails once
    await first.step()
    assert sent(sink) == [(1, 1, 0), (1, 1, 1)] and first.failures == 1
    assert first.cursor == start  # nothing saved until all that was read is accepted
    await first.step()
    assert sent(sink) == [(1, 1, 0), (1, 1, 1), (1, 1, 2), (2, 1, 0)]
    assert first.failures == 0 and first.cursor == index.last_seq
    assert await StreamCursors(index.db).load("destination:siem") == index.last_seq
    assert first.lane.state.sent == 4
    # another node (or a restart) resumes from the saved cursor: nothing is sent again
    again = Recorder()
    second = follower(index, again, Switch())
    await second.step()
    assert again.accepted == [] and second.cursor == index.last_seq


async def test_refusals_retention_trims_and_the_lease(index: DocumentIndex) -> None:
    sink, lease = Recorder(), Switch()
    steps = follower(index, sink, lease)
    await steps.step()
    await store(index, 3, 1, 2, "siem")
    await store(index, 3, 2, 1, "siem")
    sink.answers = [DestinationRejected("HTTP 400: bad")]
    await steps.step()
    assert sent(sink) == [(3, 2, 0)]  # the refused batch is counted, not retried
    assert (steps.lane.state.failed, steps.lane.state.sent) == (2, 1)
    # without the lease nothing is read or sent, and the position is forgotten
    lease.held = False
    await store(index, 4, 1, 1, "siem")
    await steps.step()
    assert sent(sink) == [(3, 2, 0)] and steps.cursor is None
    lease.held, lease.token = True, 2
    await steps.step()
    assert sent(sink)[-1] == (4, 1, 0)
    # rows older than the retention when read are dropped, counted
    old = follower(index, Recorder(), Switch(), retention=0.000001)
    await old.step()
    await store(index, 5, 1, 2, "siem")
    await old.step()
    assert old.lane.state.dropped == 2 and old.lane.state.sent == 0
    # changes trimmed from the log before delivery are counted and said
    cursors = StreamCursors(index.db)
    await cursors.save("destination:lagging", index.last_seq)  # then it stays down...
    for n in range(3):
        await store(index, 6, n, 1, "other")
    await ChangeLogRetention(index.db, 0.000001).trim_once()  # ...past change_retention
    lagging = Follower(
        Lane("lagging", Recorder(), batch_size=2),
        CampaignResults(index),
        cursors,
        Switch(),
    )
    await lagging.step()
    assert lagging.skipped_changes > 0
    assert "left the change log" in (lagging.lane.state.last_error or "")


async def test_the_retry_delay_stays_capped_after_thousands_of_failures(
    index: DocumentIndex,
) -> None:
    steps = follower(index, Recorder(), Switch(), retry_max=7.0)
    steps.failures = 5000  # a receiver down for days: 2.0 ** 4999 is an OverflowError
    assert steps._delay() == 7.0


async def test_a_sink_error_that_is_not_a_destination_error_is_counted_not_retried(
    index: DocumentIndex,
) -> None:
    sink = Recorder()
    steps = follower(index, sink, Switch())
    await steps.step()
    await store(index, 7, 1, 2, "siem")
    await store(index, 7, 2, 1, "siem")
    sink.answers = [KeyError("campaign")]  # e.g. a file sink with no file for this source
    await steps.step()
    assert sent(sink) == [(7, 2, 0)]  # the batch it failed on is passed, the next sent
    assert (steps.lane.state.failed, steps.lane.state.sent, steps.failures) == (2, 1, 0)
    assert steps.lane.state.last_error == "KeyError: 'campaign'"
    assert steps.cursor == index.last_seq


async def test_an_idle_destination_polls_the_log_at_most_every_poll_floor(
    index: DocumentIndex,
) -> None:
    steps = follower(index, Recorder(), Switch(), interval=0.05)
    assert steps._delay() == POLL_FLOOR == 1.0
    slow = follower(index, Recorder(), Switch(), interval=5.0)
    assert slow._delay() == 5.0


def paged(index: DocumentIndex, sink: Recorder, **feed: int) -> Follower:
    """A follower sending batches of 2, reading the log `page` changes at a time."""
    return Follower(
        Lane("siem", sink, batch_size=2),
        CampaignResults(index, **feed),
        StreamCursors(index.db),
        Switch(),
    )


async def test_a_large_campaign_goes_batch_by_batch_each_acknowledged_batch_saved(
    index: DocumentIndex,
) -> None:
    sink = Recorder()
    first = paged(index, sink, page=2)
    await first.step()
    seqs = {}
    for host in (1, 2, 3, 4):
        await store(index, 8, host, 2, "siem")  # two rows per host: a batch each
        seqs[host] = index.last_seq
        await store(index, 9, host, 5, "other")  # another destination's, larger
    await first.step()
    # one batch read, sent, and its cursor saved: exactly at its result
    assert sent(sink) == [(8, 1, 0), (8, 1, 1)] and len(first.pending) == 0
    assert first.cursor == seqs[1] == await StreamCursors(index.db).load("destination:siem")
    sink.answers = [DestinationError("HTTP 503")]
    await first.step()  # the second batch fails: read, not acknowledged
    assert first.cursor == seqs[1] and len(first.pending) == 2
    # a restart (or another node) resends only the batch that was not acknowledged
    again = Recorder()
    second = paged(index, again, page=2)
    await second.step()
    assert sent(again) == [(8, 2, 0), (8, 2, 1)] and second.cursor == seqs[2]
    await second.step()
    assert second.cursor == seqs[3]
    await second.step()
    assert sent(again)[-2:] == [(8, 4, 0), (8, 4, 1)] and second.cursor == seqs[4]
    assert [len(batch) for batch in again.accepted] == [2, 2, 2]


async def test_a_read_over_other_destinations_results_stops_after_its_scan(
    index: DocumentIndex,
) -> None:
    feed = CampaignResults(index, page=2, scan=4)
    start = index.last_seq
    for host in range(6):
        await store(index, 10, host, 1, "other")
    batch = await feed.read("siem", start, 2)
    assert batch.events == [] and batch.full  # 4 results looked at: the step ends there
    rest = await feed.read("siem", batch.upto, 2)
    assert rest.events == [] and not rest.full and rest.upto == index.last_seq


async def test_pending_rows_past_the_retention_are_dropped_counted(index: DocumentIndex) -> None:
    sink = Recorder()
    steps = follower(index, sink, Switch())
    await steps.step()
    await store(index, 11, 1, 2, "siem")
    sink.answers = [DestinationError("connection refused")]
    await steps.step()
    assert len(steps.pending) == 2 and steps.failures == 1
    steps.lane.retention = 0.000001  # the destination stayed down past its retention
    await steps.step()
    assert sink.accepted == [] and not steps.pending
    assert steps.lane.state.dropped == 2 and steps.cursor == index.last_seq


class TrimmedUnder:
    """The campaign feed, with the change log trimmed (change_retention) under each read."""

    def __init__(self, index: DocumentIndex) -> None:
        self.index = index
        self.feed = CampaignResults(index)

    async def read(self, destination: str, after: int, limit: int) -> FeedBatch:
        await ChangeLogRetention(self.index.db, 0.000001).trim_once()
        return await self.feed.read(destination, after, limit)

    async def end(self) -> int:
        return await self.feed.end()

    async def first_retained(self) -> int:
        return await self.feed.first_retained()


async def test_changes_trimmed_while_they_are_read_are_counted(index: DocumentIndex) -> None:
    sink = Recorder()
    steps = Follower(
        Lane("siem", sink, batch_size=2), TrimmedUnder(index), StreamCursors(index.db), Switch()
    )
    await steps.step()
    start = steps.cursor
    assert start is not None
    for host in range(3):
        await store(index, 12, host, 1, "siem")
    await steps.step()  # only the newest change outlives the trim
    assert steps.skipped_changes == index.last_seq - 1 - start
    assert "left the change log" in (steps.lane.state.last_error or "")
    await steps.step()
    assert sent(sink) == [(12, 2, 0)] and steps.cursor == index.last_seq


async def test_a_result_without_its_destinations_takes_its_campaigns(
    index: DocumentIndex,
) -> None:
    sink = Recorder()
    steps = follower(index, sink, Switch())
    await steps.step()
    # stored by an older version: the campaign names the destination, its result does not
    campaign = {"id": 13, "query": "SELECT 13", "query_id": None, "destinations": ["siem"]}
    await index.apply([Write(Action.PUT, campaign_link(13), CAMPAIGN_KIND, campaign)])
    result = {"campaign_id": 13, "host_id": 1, "hostname": "h1", "rows": [{"n": "0"}]}
    await index.apply([Write(Action.POST, result_link(13, 1), RESULT_KIND, result)])
    await store(index, 14, 1, 1)  # a campaign without destinations: sent nowhere
    await steps.step()
    assert sent(sink) == [(13, 1, 0)] and steps.cursor == index.last_seq
