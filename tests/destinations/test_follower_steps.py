"""A follower's steps over a real change log (SQLite and PostgreSQL) and a recording sink:
only results naming the destination are sent, in log order, and the cursor saved once they
were accepted; a refusal for good is counted and passed; rows past the retention and changes
trimmed from the log before delivery are counted, never silent; a node without the lease
sends nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from fleetwatch.destinations import (
    DestinationError,
    DestinationRejected,
    Event,
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
