"""Continuous queries on three nodes: a task created on one node streams on another the
changes written on a third, resumes on any node after a sequence, and its webhook keeps
delivering, once per change, when the node delivering it is killed."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.cluster.harness import Cluster
from tests.cluster.test_nodes import clients, eventually
from tests.query.task_client import TASKS, WsReader, kind_query, task_body
from tests.receiver import running_receiver


@contextmanager
def stream(
    cluster: Cluster, number: int, token: str, link: str, since: int | None = None
) -> Iterator[WsReader]:
    url = cluster.node(number).url.replace("http://", "ws://") + f"{link}/stream"
    if since is not None:
        url += f"?since={since}"
    with connect(url, additional_headers={"authorization": f"Bearer {token}"}) as ws:
        yield WsReader(ws)


def create_task(client: httpx.Client, kind: str) -> str:
    reply = client.post(TASKS, json=task_body(kind_query(kind), "CONTINUOUS", "EXPAND_CONTENT"))
    assert reply.status_code == 202, reply.text
    link: str = reply.json()["documentSelfLink"]
    return link


def post_doc(client: httpx.Client, collection: str, name: str, **fields: Any) -> None:
    reply = client.post(f"/docs/{collection}", json={"documentSelfLink": name, **fields})
    assert reply.status_code == 200, reply.text


def changed_link(message: dict[str, Any]) -> str:
    assert message["type"] == "change", message
    links: list[str] = message["results"]["documentLinks"]
    assert len(links) == 1
    return links[0]


def test_a_task_streams_on_every_node_every_change_in_order(cluster: Cluster) -> None:
    token = cluster.login(1)
    with clients(cluster, token) as (one, two, three):
        link = create_task(one, "docs:c")
        eventually(lambda: two.get(link).status_code == 200, "the task is known on node 2")
        with stream(cluster, 2, token, link) as ws:
            links, _, _ = ws.initial()
            assert links == []
            for i in range(30):  # written through nodes 1 and 3, in turn
                post_doc((one, three)[i % 2], "c", f"d{i}", i=i)
            notes = ws.take(30)
            assert [changed_link(n) for n in notes] == [f"/docs/c/d{i}" for i in range(30)]
            seqs = [n["seq"] for n in notes]
            assert seqs == sorted(seqs) and len(set(seqs)) == 30
            assert ws.quiet()
        # a subscriber that reconnects to another node resumes exactly after its cursor
        eventually(lambda: three.get(link).status_code == 200, "the task is known on node 3")
        with stream(cluster, 3, token, link, since=notes[9]["seq"]) as ws:
            rest = ws.take(20)
            assert [changed_link(n) for n in rest] == [f"/docs/c/d{i}" for i in range(10, 30)]
            assert ws.quiet()
        # cancelled on node 3: it stops on every node
        cancelled = three.patch(link, json={"taskInfo": {"stage": "CANCELLED"}})
        assert cancelled.status_code == 200, cancelled.text
        eventually(
            lambda: one.get(link).json()["taskInfo"]["stage"] == "CANCELLED",
            "node 1 sees the cancel",
        )
        post_doc(two, "c", "after-cancel")
        time.sleep(1.0)
        for client in (one, two, three):
            body = client.get(link).json()
            assert body["taskInfo"]["stage"] == "CANCELLED"
        # a paged result cut on node 1 is served, page by page, by nodes 2 and 3
        sort: dict[str, Any] = {
            "sortTerm": {"propertyName": "i", "propertyType": "LONG"},
            "sortOrder": "ASC",
        }
        paged = one.post(TASKS, json=task_body(kind_query("docs:c"), "SORT", resultLimit=7, **sort))
        assert paged.status_code == 202, paged.text
        page_link: str | None = paged.json()["results"]["nextPageLink"]
        seen: list[str] = []
        for turn in itertools.cycle((two, three)):
            if page_link is None:
                break
            page = turn.get(page_link)
            assert page.status_code == 200, page.text
            seen += page.json()["results"]["documentLinks"]
            page_link = page.json()["results"].get("nextPageLink")
        assert "/docs/c/after-cancel" in seen  # it has no `i`: where it sorts is no matter
        assert [x for x in seen if x != "/docs/c/after-cancel"] == [
            f"/docs/c/d{i}" for i in range(30)
        ]


def webhook_owner(cluster: Cluster) -> int:
    """The node holding the webhooks lease (from /healthz)."""
    holders = []
    for node in cluster.nodes:
        if not node.running:
            continue
        health = httpx.get(f"{node.url}/healthz", timeout=5).json()
        if "webhooks" in health["bus"]["leases"]:
            holders.append(node.number)
    assert len(holders) <= 1, f"two nodes hold the webhooks lease: {holders}"
    return holders[0] if holders else 0


def test_webhook_owner_killed_under_load_loses_nothing(cluster: Cluster) -> None:
    total = 240
    token = cluster.login(1)
    with running_receiver() as receiver, clients(cluster, token) as nodes:
        link = create_task(nodes[0], "docs:f")
        eventually(
            lambda: all(c.get(link).status_code == 200 for c in nodes), "the task on every node"
        )
        reply = nodes[1].post(
            f"{link}/subscriptions",
            json={"reference": receiver.endpoint("f"), "replayState": False},
        )
        assert reply.status_code == 200, reply.text
        eventually(lambda: webhook_owner(cluster) != 0, "a node delivers webhooks")
        owner = webhook_owner(cluster)
        writers = [c for n, c in enumerate(nodes, 1) if n != owner]
        post_doc(writers[0], "f", "warm-up")
        receiver.wait_for("f", 1)

        written: list[str] = []

        def write() -> None:
            for i, client in zip(range(total), itertools.cycle(writers), strict=False):
                post_doc(client, "f", f"d{i}", i=i)
                written.append(f"/docs/f/d{i}")
                time.sleep(0.02)

        writer = threading.Thread(target=write)
        writer.start()
        eventually(lambda: len(receiver.bodies("f")) > 60, "deliveries under way")
        cluster.kill(owner)  # SIGKILL: no clean hand-over, its lease has to lapse
        writer.join(timeout=120)
        assert not writer.is_alive()
        bodies = receiver.wait_for("f", total + 1, timeout=60)
        successor = webhook_owner(cluster)
        assert successor not in (0, owner)

    delivered = [changed_link(b) for b in bodies[1:]]  # after the warm-up
    # every change exactly once, in order; at most the one notification in flight when the
    # owner died is repeated by its successor (its `seq` tells a receiver it is a repeat)
    unique = list(dict.fromkeys(delivered))
    assert unique == written
    repeats = len(delivered) - len(unique)
    assert repeats <= 1, f"{repeats} notifications delivered twice"
    seqs = [b["seq"] for b in bodies]
    assert list(dict.fromkeys(seqs)) == sorted(set(seqs))
