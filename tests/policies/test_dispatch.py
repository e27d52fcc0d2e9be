"""The policy query source: which hosts run a policy, when it is due again, what an answer
is, and that an unchanged answer writes nothing (over a real document index)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from fleetwatch.bus.wakeups import HostWakeups
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.host_state import HostState
from fleetwatch.index import DocumentIndex
from fleetwatch.policies.dispatch import PolicySource, applies
from fleetwatch.policies.model import Policy, result_link
from fleetwatch.policies.results import PolicyResults
from tests.agent import Agent
from tests.api.test_policies import checkin
from tests.policies.cluster import SECRET, two_nodes
from tests.services import PostgresServer


def host(host_id: int, platform: str = "ubuntu", team_id: int | None = None) -> HostState:
    return HostState(
        id=host_id,
        node_key_hash="",
        host_identifier=f"h{host_id}",
        uuid=f"u{host_id}",
        hostname=f"host-{host_id}",
        platform=platform,
        team_id=team_id,
        enrolled_at=0.0,
        seen_time=None,
        detail_updated_at=None,
        distributed_interval=1,
        config_tls_refresh=60,
    )


def policy(policy_id: int, **fields: object) -> Policy:
    values: dict[str, object] = {
        "name": f"p{policy_id}",
        "description": "",
        "resolution": "",
        "query": "SELECT 1",
        "platform": "",
        "interval": 60,
        "team_id": None,
        "created_at": 0.0,
        "updated_at": 0.0,
    }
    values.update(fields)
    return Policy(id=policy_id, **values)  # type: ignore[arg-type]


def test_applies_by_team_and_platform_family() -> None:
    assert applies(policy(1), host(1, "darwin", 3))
    assert applies(policy(1, team_id=3), host(1, team_id=3))
    assert not applies(policy(1, team_id=3), host(1, team_id=4))
    assert not applies(policy(1, team_id=3), host(1))
    assert applies(policy(1, platform="darwin,linux"), host(1, "rhel"))
    assert not applies(policy(1, platform="windows"), host(1, "ubuntu"))


async def test_due_answers_and_writes(index: DocumentIndex) -> None:
    results = PolicyResults(index)
    await results.load()
    book = {1: policy(1, interval=60), 2: policy(2, platform="windows")}
    source = PolicySource(book, results, index, HostWakeups())
    h = host(7)
    assert source.queries_for(h, 1000.0) == {"fleet_policy_query_1": "SELECT 1"}
    # offered on every read until answered
    assert source.queries_for(h, 1001.0) == {"fleet_policy_query_1": "SELECT 1"}
    await source.ingest(h, [DistributedResult("fleet_policy_query_1", [], 0, "")])
    doc = await index.get(result_link(1, 7))
    assert doc is not None and doc.body["response"] == "fail" and doc.version == 0
    assert results.counts(1) == (0, 1)
    # answered: not due again before the interval
    now = doc.update_time_micros / 1e6
    assert source.queries_for(h, now + 1) == {}
    assert source.queries_for(h, now + 61) == {"fleet_policy_query_1": "SELECT 1"}
    # the same answer again writes nothing; an error is unknown with its message
    await source.ingest(h, [DistributedResult("fleet_policy_query_1", [], 0, "")])
    same = await index.get(result_link(1, 7))
    assert same is not None and same.version == 0
    source.queries_for(h, now + 200)
    await source.ingest(h, [DistributedResult("fleet_policy_query_1", [], 1, "no such table")])
    error = await index.get(result_link(1, 7))
    assert error is not None and (error.body["response"], error.body["error"]) == (
        "",
        "no such table",
    )
    assert results.counts(1) == (0, 0)
    # an answer to a query since changed is not taken
    source.queries_for(h, now + 400)
    book[1].query = "SELECT 2"
    source.changed(1, reset=True)
    await source.ingest(h, [DistributedResult("fleet_policy_query_1", [{"1": "1"}], 0, "")])
    assert results.counts(1) == (0, 0)
    assert source.queries_for(h, now + 401) == {"fleet_policy_query_1": "SELECT 2"}
    await source.ingest(h, [DistributedResult("fleet_policy_query_1", [{"1": "1"}], 0, "")])
    assert results.counts(1) == (1, 0)
    results.stop()


def test_a_host_answering_on_one_node_is_not_asked_again_early_by_another(
    pg_server: PostgresServer, redis_url: str, tmp_path: Path
) -> None:
    """The host checks in on node A and answers there; node B learns when (over the bus)
    and does not hand it the policy again before its interval."""
    with (
        two_nodes(pg_server, redis_url, tmp_path) as (a, b, api_a, _),
        httpx.Client(base_url=a.url) as agents_a,
        httpx.Client(base_url=b.url) as agents_b,
    ):
        agent = Agent(agents_a, SECRET, "n0", "nu0")
        agent.enroll()
        policy_id = api_a.post(
            "/api/v1/fleet/policies", json={"name": "fw", "query": "SELECT 1"}
        ).json()["policy"]["id"]
        name = f"fleet_policy_query_{policy_id}"
        assert name in checkin(agent, {policy_id: [{"1": "1"}]})
        host_id = int(api_a.get("/api/v1/fleet/hosts").json()["hosts"][0]["id"])
        on_b = Agent(agents_b, SECRET, "n0", "nu0")
        on_b.node_key = agent.node_key

        def wait(condition: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 10
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.05)

        # B knows the policy and the host (both followed from the change log) ...
        wait(lambda: policy_id in b.services.policies.book)
        wait(lambda: b.services.hosts.by_id(host_id) is not None)
        state = b.services.hosts.by_id(host_id)
        assert policy_id in b.services.policies.book and state is not None

        async def due_on_b() -> dict[str, str]:
            return b.services.policies.source.queries_for(state, time.time())

        # ... and, once told when the host answered, does not ask it again
        wait(lambda: name not in b.call(due_on_b()))
        queries = on_b.post("distributed/read", {}).json()["queries"]
        assert name not in queries
        assert b.services.policies.source.answered_at(policy_id, host_id) is not None
