"""A live query over a simulated fleet spread across three nodes: created on node 1, its
hosts checking in on nodes 1, 2 and 3, its results streamed on node 3 and counted alike by
every node. Each host runs the query for real on its own tables, once."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from typing import Any

import httpx
from websockets.asyncio.client import connect

from fleetwatch.sim import AgentFlags, Fleet
from tests.cluster.harness import ENROLL_SECRET, Cluster

PER_NODE = 8
SQL = "SELECT hostname, platform FROM system_info, os_version"


async def online_hosts(api: httpx.AsyncClient) -> set[str]:
    reply = await api.get("/api/v1/fleet/hosts", params={"per_page": 1000})
    assert reply.status_code == 200, reply.text
    return {h["hostname"] for h in reply.json()["hosts"] if h["status"] == "online"}


async def test_a_live_query_over_hosts_spread_across_the_nodes(cluster: Cluster) -> None:
    token = cluster.login(1)
    headers = {"Authorization": f"Bearer {token}"}
    fleets = [
        Fleet(
            node.url,
            ENROLL_SECRET,
            PER_NODE,
            seed=node.number,
            first_index=(node.number - 1) * PER_NODE,
            platforms="ubuntu=2,darwin=1,windows=1",
            flags=AgentFlags(retry_unit=0.1),
        )
        for node in cluster.nodes
    ]
    async with AsyncExitStack() as stack:
        apis = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=node.url, headers=headers, timeout=30)
            )
            for node in cluster.nodes
        ]
        for fleet in fleets:
            await stack.enter_async_context(fleet)
        for fleet in fleets:
            await fleet.wait_enrolled(60)
        everyone = {h.hostname for fleet in fleets for h in fleet.hosts}
        assert len(everyone) == 3 * PER_NODE
        deadline = time.monotonic() + 60
        while await online_hosts(apis[0]) != everyone:  # node 1 sees the others' check-ins
            assert time.monotonic() < deadline, "node 1 never saw every host online"
            await asyncio.sleep(0.2)

        reply = await apis[0].post(
            "/api/v1/fleet/queries/run", json={"query": SQL, "targets": [{"type": "all"}]}
        )
        assert reply.status_code == 200, reply.text
        campaign_id = reply.json()["campaign_id"]
        assert reply.json()["campaign"]["totals"]["online"] == 3 * PER_NODE

        url = cluster.node(3).url.replace("http://", "ws://")
        results: dict[str, dict[str, Any]] = {}
        status = None
        async with connect(
            f"{url}/api/v1/fleet/results/websocket?campaign_id={campaign_id}&token={token}"
        ) as ws:
            while status != "finished":
                message = json.loads(await ws.recv(decode=True))
                assert message["type"] != "error", message
                if message["type"] == "result":
                    data = message["data"]
                    assert data["hostname"] not in results, "a result streamed twice"
                    results[data["hostname"]] = data
                elif message["type"] == "status":
                    status = message["data"]["status"]

        assert set(results) == everyone
        for hostname, result in results.items():
            assert result["status"] == "complete", result
            assert [row["hostname"] for row in result["rows"]] == [hostname]  # its own tables
        name = f"fleet_distributed_query_{campaign_id}"
        for fleet in fleets:
            for host in fleet.hosts:
                ran = [q for q in host.received_queries if q.name == name]
                assert len(ran) == 1, f"{host.hostname} ran the query {len(ran)} times"
        for api in apis:  # every node counted the same
            campaign = (await api.get(f"/api/v1/fleet/campaigns/{campaign_id}")).json()
            totals = campaign["campaign"]["totals"]
            assert campaign["campaign"]["status"] == "finished"
            assert totals["responded"] == 3 * PER_NODE and totals["pending"] == 0
            assert totals["rows"] == 3 * PER_NODE
