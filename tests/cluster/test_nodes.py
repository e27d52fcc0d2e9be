"""Any node answers any agent or user request: three real nodes on one PostgreSQL and one
Redis, no load balancer and no stickiness (each request picks its node explicitly)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from tests.agent import Agent
from tests.cluster.harness import ENROLL_SECRET, Cluster

#: Seconds a change made on one node may take to show on another (the change log's
#: broadcast takes milliseconds; its poll, the fallback, 1 s).
PROPAGATION = 15.0


@contextmanager
def clients(cluster: Cluster, token: str | None = None) -> Iterator[list[httpx.Client]]:
    """One client per node (index 0 is node 1), with the bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    made = [httpx.Client(base_url=node.url, headers=headers) for node in cluster.nodes]
    try:
        yield made
    finally:
        for client in made:
            client.close()


def on(client: httpx.Client, agent: Agent) -> Agent:
    """The same agent (node key) talking to another node."""
    moved = Agent(client, agent.secret, agent.hostname, agent.uuid)
    moved.node_key = agent.node_key
    return moved


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PROPAGATION
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_a_host_enrolled_on_one_node_checks_in_on_the_others(cluster: Cluster) -> None:
    with clients(cluster) as (one, two, three):
        agent = Agent(one, ENROLL_SECRET, "h1", "u1")
        assert agent.enroll()["node_key"]
        for client in (two, three):
            moved = on(client, agent)
            read = moved.post("distributed/read", {})
            assert read.status_code == 200, read.text
            assert "node_invalid" not in read.json() and "queries" in read.json()
            config = moved.post("config", {})
            assert config.status_code == 200 and config.json()["node_invalid"] is False
            logged = moved.post("log", {"log_type": "status", "data": []})
            assert logged.status_code == 200 and logged.json() == {}


def test_an_enroll_secret_created_on_one_node_enrolls_on_another(cluster: Cluster) -> None:
    with clients(cluster, cluster.login(2)) as (_, two, three):
        created = two.post("/api/v1/fleet/secrets", json={"secret": "made-on-node-2"})
        assert created.status_code == 201, created.text
        reply = Agent(three, "made-on-node-2", "h2", "u2").enroll()
        assert reply.get("node_key"), reply
        revoked = two.delete("/api/v1/fleet/secrets/made-on-node-2")
        assert revoked.status_code in (200, 204), revoked.text
        eventually(
            lambda: Agent(three, "made-on-node-2", "h3", "u3").enroll().get("node_invalid") is True,
            "a secret revoked on node 2 refused on node 3",
        )


def test_a_host_deleted_on_one_node_is_invalid_on_the_others(cluster: Cluster) -> None:
    with clients(cluster, cluster.login(1)) as (one, two, three):
        agent = Agent(two, ENROLL_SECRET, "h1", "u1")
        agent.enroll()
        on_three = on(three, agent)
        assert "node_invalid" not in on_three.post("distributed/read", {}).json()
        hosts = one.get("/api/v1/fleet/hosts").json()["hosts"]
        assert [h["hostname"] for h in hosts] == ["h1"]
        assert one.delete(f"/api/v1/fleet/hosts/{hosts[0]['id']}").status_code == 200
        eventually(
            lambda: on_three.post("distributed/read", {}).json().get("node_invalid") is True,
            "node 3 refuses the deleted host's key",
        )
        assert on(two, agent).post("config", {}).json().get("node_invalid") is True
        # it re-enrolls on any node and is welcome everywhere again
        again = Agent(three, ENROLL_SECRET, "h1", "u1")
        assert again.enroll()["node_key"]
        assert "node_invalid" not in on(one, again).post("distributed/read", {}).json()


def test_check_ins_on_one_node_show_on_the_others(cluster: Cluster) -> None:
    with clients(cluster, cluster.login(1)) as (one, two, three):
        agent = Agent(one, ENROLL_SECRET, "h1", "u1")
        agent.enroll()
        host_id = one.get("/api/v1/fleet/hosts").json()["hosts"][0]["id"]
        enrolled = three.get(f"/api/v1/fleet/hosts/{host_id}").json()["host"]["seen_time"]
        time.sleep(1.1)  # seen_time has second resolution in the API
        on(two, agent).post("distributed/read", {})  # only node 2 sees this check-in
        eventually(
            lambda: (
                three.get(f"/api/v1/fleet/hosts/{host_id}").json()["host"]["seen_time"] > enrolled
            ),
            "node 3 learns node 2's check-in",
        )
        assert three.get(f"/api/v1/fleet/hosts/{host_id}").json()["host"]["status"] == "online"


def test_every_node_is_healthy_and_a_killed_node_comes_back(cluster: Cluster) -> None:
    with clients(cluster) as all_nodes:
        for client in all_nodes:
            body = client.get("/healthz").json()
            assert body["status"] == "ok", body
            assert body["bus"]["mode"] == "cluster" and body["bus"]["redis"] == "ok"
            assert body["database"] == {"status": "ok"}
        one, two, three = all_nodes
        agent = Agent(one, ENROLL_SECRET, "h1", "u1")
        agent.enroll()
        cluster.kill(1)
        # the others keep answering the agent
        for client in (two, three):
            assert "node_invalid" not in on(client, agent).post("distributed/read", {}).json()
        cluster.restart(1)
        assert "node_invalid" not in on(one, agent).post("distributed/read", {}).json()
        assert one.get("/healthz").json()["status"] == "ok"
