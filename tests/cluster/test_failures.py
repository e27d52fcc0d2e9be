"""Failures on a three-node cluster: Redis restarted, a node killed in the middle of a live
query. Agents keep getting osquery JSON, nothing acknowledged is lost, the cluster recovers
without help."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.agent import Agent, answer_details
from tests.cluster.harness import ENROLL_SECRET, Cluster
from tests.cluster.test_continuous_queries import changed_link, create_task, post_doc, stream
from tests.cluster.test_nodes import clients, eventually, on
from tests.services import RedisServer


def answer(agent: Agent, campaign_id: int) -> httpx.Response:
    name = f"fleet_distributed_query_{campaign_id}"
    body = {
        "queries": {name: [{"host": agent.hostname}]},
        "statuses": {name: 0},
        "messages": {name: ""},
    }
    return agent.post("distributed/write", body)


def test_redis_restart_loses_no_change_and_agents_keep_working(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    token = cluster.login(1)
    with clients(cluster, token) as (one, two, three):
        agent = Agent(one, ENROLL_SECRET, "h1", "u1")
        agent.enroll()
        link = create_task(one, "docs:r")
        eventually(lambda: two.get(link).status_code == 200, "the task on node 2")
        with stream(cluster, 2, token, link) as ws:
            ws.initial()
            post_doc(one, "r", "before")
            assert changed_link(ws.next()) == "/docs/r/before"
            redis_server.kill()
            eventually(
                lambda: "redis unreachable" in two.get("/healthz").json()["degraded"],
                "node 2 reports Redis down",
            )
            # Without Redis: agents still get osquery JSON on every node, writes still land
            for client in (one, two, three):
                read = on(client, agent).post("distributed/read", {})
                assert read.status_code == 200 and "queries" in read.json(), read.text
            for i in range(5):
                post_doc((one, three)[i % 2], "r", f"during{i}")
            redis_server.restart()
            for i in range(5):
                post_doc(three, "r", f"after{i}")
            # the stream on node 2 misses nothing: the broadcasts lost with Redis are read
            # back from the change log
            got = [changed_link(ws.next(timeout=30)) for _ in range(10)]
            assert got == [f"/docs/r/during{i}" for i in range(5)] + [
                f"/docs/r/after{i}" for i in range(5)
            ]
        eventually(
            lambda: all(c.get("/healthz").json()["status"] == "ok" for c in (one, two, three)),
            "every node healthy again",
        )


def test_a_node_killed_mid_campaign_loses_no_acknowledged_result(cluster: Cluster) -> None:
    token = cluster.login(1)
    with clients(cluster, token) as nodes:
        agents = [Agent(nodes[i % 3], ENROLL_SECRET, f"h{i}", f"u{i}") for i in range(9)]
        for agent in agents:
            agent.enroll()
            answer_details(agent)
        time.sleep(1.0)  # every node has seen every check-in (seen times are shared)
        reply = nodes[0].post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT 1", "targets": [{"type": "all"}], "timeout": 300},
        )
        assert reply.status_code == 200, reply.text
        campaign_id = reply.json()["campaign_id"]
        assert reply.json()["campaign"]["totals"]["online"] == 9
        # three hosts answer through node 2, and node 2 acknowledges (osquery's `{}`)
        for agent in agents[:3]:
            moved = on(nodes[1], agent)
            assert (
                f"fleet_distributed_query_{campaign_id}"
                in moved.post("distributed/read", {}).json()["queries"]
            )
            assert answer(moved, campaign_id).json() == {}
        cluster.kill(2)  # and dies
        # the others answer through nodes 1 and 3; the campaign created on node 1 finishes
        for i, agent in enumerate(agents[3:]):
            moved = on(nodes[(0, 2)[i % 2]], agent)
            assert answer(moved, campaign_id).json() == {}
        eventually(
            lambda: (
                nodes[2].get(f"/api/v1/fleet/campaigns/{campaign_id}").json()["campaign"]["status"]
                == "finished"
            ),
            "the campaign finishes",
        )
        results = nodes[2].get(f"/api/v1/fleet/campaigns/{campaign_id}/results").json()
        assert sorted(r["hostname"] for r in results["results"]) == sorted(
            a.hostname for a in agents
        )
        url = cluster.node(3).url.replace("http://", "ws://")
        seen: list[Any] = []
        with connect(
            f"{url}/api/v1/fleet/results/websocket?campaign_id={campaign_id}&token={token}"
        ) as ws:
            while True:
                message = json.loads(ws.recv(timeout=20))
                if message["type"] == "result":
                    seen.append(message["data"]["hostname"])
                if message["type"] == "status" and message["data"]["status"] == "finished":
                    break
        assert sorted(seen) == sorted(a.hostname for a in agents)
        # node 2 comes back and agrees
        cluster.restart(2)
        body = httpx.get(
            f"{cluster.node(2).url}/api/v1/fleet/campaigns/{campaign_id}",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert body["campaign"]["status"] == "finished"
        assert body["campaign"]["totals"]["responded"] == 9
