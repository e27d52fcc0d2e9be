"""Durable destination delivery end to end, over real sockets, on SQLite and PostgreSQL: a
destination follows the change log from its saved cursor, so rows stored while its receiver
refuses connections or answers 5xx, and across server restarts, all arrive, in log order, and
nothing the receiver accepted is sent again after a restart. On a cluster one node delivers
(the holder of the destination's lease) and another takes over, from the cursor, when it
stops."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.destinations import DestinationSettings
from tests.agent import Agent, answer_details
from tests.api.test_live_queries import SECRET, answer
from tests.conftest import login
from tests.receiver import NDJSON, Receiver, running_receiver
from tests.server import RunningServer, cluster_node_settings, running_server
from tests.services import PostgresServer, free_port


def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Operator:
    """Agents and an API client that outlive a server (the server keeps its port)."""

    def __init__(self, url: str, n: int) -> None:
        self.url = url
        self.agent_client = httpx.Client(base_url=url, timeout=30)
        self.agents = [Agent(self.agent_client, SECRET, f"host-{i}", f"uuid-{i}") for i in range(n)]
        self.api = httpx.Client(base_url=url, timeout=30)

    def enroll(self) -> None:
        for agent in self.agents:
            agent.enroll()
            answer_details(agent)

    def sign_in(self, server: RunningServer) -> None:
        self.api.headers["Authorization"] = f"Bearer {login(server)}"

    def campaign(self, rows_per_host: list[int]) -> int:
        """Run a campaign to `lines` and answer it: host i sends `rows_per_host[i]` rows."""
        reply = self.api.post(
            "/api/v1/fleet/queries/run",
            json={
                "query": "SELECT pid FROM processes",
                "targets": [{"type": "all"}],
                "destinations": ["lines"],
            },
        )
        assert reply.status_code == 200, reply.text
        campaign_id: int = reply.json()["campaign_id"]
        for agent, n in zip(self.agents, rows_per_host, strict=True):
            answer(agent, campaign_id, [{"pid": str(j)} for j in range(n)])
        return campaign_id

    def destination(self) -> dict[str, Any]:
        reply = self.api.get("/api/v1/fleet/destinations")
        assert reply.status_code == 200, reply.text
        [shown] = reply.json()["destinations"]
        return shown  # type: ignore[no-any-return]

    def close(self) -> None:
        self.api.close()
        self.agent_client.close()


def keys(records: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    return [(r["campaign_id"], r["host_id"], r["row_index"]) for r in records]


@pytest.fixture
def receiver_port() -> int:
    return free_port()


@pytest.fixture
def durable_settings(server_settings: Settings, receiver_port: int) -> Settings:
    return server_settings.model_copy(
        update={
            "port": free_port(),  # the same URL after each restart
            "outbound_allow": "127.0.0.0/8",
            "destinations": {
                "lines": DestinationSettings(
                    type="http",
                    url=f"http://127.0.0.1:{receiver_port}/ndjson/lines",
                    batch_size=2,
                    interval=0.05,
                    retry_max=0.2,
                    timeout=5.0,
                )
            },
        }
    )


@pytest.fixture
def operator(durable_settings: Settings) -> Iterator[Operator]:
    ops = Operator(f"http://127.0.0.1:{durable_settings.port}", 3)
    yield ops
    ops.close()


def test_rows_survive_a_dead_receiver_and_restarts_and_are_sent_once(
    durable_settings: Settings, receiver_port: int, operator: Operator
) -> None:
    receiver = Receiver(NDJSON)
    # 1. Nothing listens on the receiver's port (connection refused): rows wait in the log.
    with running_server(durable_settings) as server:
        operator.enroll()
        operator.sign_in(server)
        first = operator.campaign([2, 2, 1])
        until(lambda: operator.destination()["retrying"], "the destination to be retrying")
        shown = operator.destination()
        assert shown["sent"] == 0 and "ConnectError" in shown["last_error"], shown
    # 2. The server restarts; the receiver comes back answering 503 three times, then takes
    #    everything. The rows stored before the restart arrive.
    with running_receiver(NDJSON, port=receiver_port, receiver=receiver):
        receiver.behaviour["lines"] = "flaky:3"
        with running_server(durable_settings) as server:
            operator.sign_in(server)
            until(lambda: len(receiver.records("lines")) >= 5, "the first campaign's rows")
            second = operator.campaign([1, 0, 3])
            until(lambda: len(receiver.records("lines")) >= 9, "the second campaign's rows")
            until(lambda: operator.destination()["queued"] == 0, "an empty queue")
            shown = operator.destination()
            assert shown["sent"] == 9 and shown["failed"] == shown["dropped"] == 0, shown
            assert receiver.attempts["lines"] > 3  # the 503s were retried
        # 3. Restarted again, with everything acknowledged: nothing is sent a second time.
        with running_server(durable_settings) as server:
            operator.sign_in(server)
            third = operator.campaign([0, 1, 0])
            until(lambda: len(receiver.records("lines")) >= 10, "the third campaign's row")
            until(lambda: operator.destination()["cursor"] is not None, "the cursor")
            time.sleep(0.5)  # a repeat, if any, would come within a few intervals
    records = receiver.records("lines")
    got = keys(records)
    assert len(got) == len(set(got)) == 10, got
    assert sorted({c for c, _, _ in got}) == [first, second, third]
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(seqs)  # delivered in change-log order
    by_result: dict[tuple[int, int], list[int]] = {}
    for campaign_id, host_id, row in got:
        by_result.setdefault((campaign_id, host_id), []).append(row)
    assert all(rows == list(range(len(rows))) for rows in by_result.values())


def test_one_node_of_a_cluster_delivers_and_another_takes_over(
    pg_server: PostgresServer, redis_url: str, tmp_path: Path
) -> None:
    database_url = pg_server.create_database(f"dest_nodes_{time.monotonic_ns()}")
    with running_receiver(NDJSON) as receiver:

        def node(name: str) -> Settings:
            return cluster_node_settings(
                database_url,
                redis_url,
                tmp_path / name,
                port=free_port(),
                distributed_hold=1.0,
                outbound_allow="127.0.0.0/8",
                destinations={
                    "lines": DestinationSettings(
                        type="http", url=receiver.endpoint("lines"), batch_size=2, interval=0.05
                    )
                },
            )

        with ExitStack() as node_b:
            b = node_b.enter_context(running_server(node("b")))
            on_b = Operator(b.url, 0)
            node_b.callback(on_b.close)
            on_b.sign_in(b)
            until(lambda: on_b.destination()["delivering"], "b (the first node) to hold the lease")
            with running_server(node("a")) as a:
                on_a = Operator(a.url, 2)
                on_a.enroll()
                on_a.sign_in(a)
                assert not on_a.destination()["delivering"]
                first = on_a.campaign([2, 1])  # stored by a, delivered by b alone
                until(lambda: len(receiver.records("lines")) >= 3, "the first campaign's rows")
                time.sleep(0.5)
                assert (on_a.destination()["sent"], on_b.destination()["sent"]) == (0, 3)
                # The receiver fails; rows stored now wait while b retries; then b stops and
                # a takes the lease over, from the cursor b saved.
                receiver.behaviour["lines"] = "fail"
                second = on_a.campaign([1, 1])
                until(lambda: on_b.destination()["retrying"], "b to be retrying")
                node_b.close()
                receiver.behaviour["lines"] = "ok"
                until(lambda: on_a.destination()["delivering"], "a to take the lease")
                until(lambda: len(receiver.records("lines")) >= 5, "the rows b could not send")
                time.sleep(0.5)
                assert on_a.destination()["sent"] == 2  # b's acknowledged rows not again
                on_a.close()
    got = keys(receiver.records("lines"))
    assert len(got) == len(set(got)) == 5, got
    assert {c for c, _, _ in got} == {first, second}
