"""A minimal osquery-shaped agent client for protocol tests: exact request shapes only.

The full simulated agent lives in fleetwatch.sim; this helper keeps the foundation tests
readable (enroll, then each endpoint with node_key in the body as osquery sends it).
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from fleetwatch.sim import canned_host
from fleetwatch.sim.profile import OSQUERY_VERSION


def details_for(hostname: str, uuid: str) -> dict[str, dict[str, str]]:
    """The enroll `host_details` of a test host (fleetwatch.sim.canned_host)."""
    return canned_host.host_details(hostname, uuid, serial="SN123", pid="1234", instance_id="aaaa")


class Agent:
    """Speaks osquery's remote API to a server."""

    def __init__(self, client: httpx.Client, secret: str, hostname: str, uuid: str) -> None:
        self.client = client
        self.secret = secret
        self.hostname = hostname
        self.uuid = uuid
        self.node_key = ""

    def enroll(self) -> dict[str, Any]:
        body = {
            "enroll_secret": self.secret,
            "host_identifier": self.uuid,
            "platform_type": canned_host.PLATFORM_TYPE,
            "host_details": details_for(self.hostname, self.uuid),
        }
        reply = self.client.post("/api/v1/osquery/enroll", json=body).json()
        if isinstance(reply.get("node_key"), str):
            self.node_key = reply["node_key"]
        return dict(reply)

    def post(self, path: str, body: dict[str, Any], *, gzip_body: bool = False) -> httpx.Response:
        payload = {**body, "node_key": self.node_key}
        headers = {"Content-Type": "application/json", "User-Agent": f"osquery/{OSQUERY_VERSION}"}
        raw = orjson.dumps(payload)
        if gzip_body:
            raw = gzip.compress(raw)
            headers["Content-Encoding"] = "gzip"
        return self.client.post(f"/api/v1/osquery/{path}", content=raw, headers=headers)


def enrolled(
    client: httpx.Client, secret: str, hostname: str = "web-01", uuid: str = "uuid-1"
) -> Agent:
    """An agent enrolled with `secret` (its node key checked: a string of 22+ characters)."""
    agent = Agent(client, secret, hostname, uuid)
    reply = agent.enroll()
    assert isinstance(reply["node_key"], str) and len(reply["node_key"]) >= 22, reply
    return agent


def enroll_many(client: httpx.Client, secret: str, count: int) -> list[Agent]:
    """`count` enrolled agents, `host-00`/`uuid-00` onwards."""
    return [enrolled(client, secret, f"host-{i:02d}", f"uuid-{i:02d}") for i in range(count)]


def answer_details(agent: Agent, rows: Mapping[str, list[dict[str, str]]] | None = None) -> None:
    """Answer the detail queries a new host receives (with no rows, except those `rows` gives
    by query name), as osquery does, so later reads have nothing pending."""
    queries = agent.post("distributed/read", {}).json()["queries"]
    assert queries, "a new host is offered its detail queries"
    answers: dict[str, list[dict[str, str]]] = {name: [] for name in queries}
    answers.update(rows or {})
    reply = agent.post(
        "distributed/write",
        {
            "queries": answers,
            "statuses": {name: 0 for name in queries},
            "messages": {name: "" for name in queries},
        },
    )
    assert reply.status_code == 200, reply.text


def wait_for_long_hold(host_id: int, hold: float, interval: float, share: float = 0.8) -> None:
    """Sleep until a read this host sends now would be held at least `share` of the hold.

    Holds are spread by each host's slot on the clock (fleetwatch.dispatch.holds), so a read
    sent at a random moment may be held for any part of the hold; tests that need a read to
    stay held start it at a moment the slot gives a long hold.
    """
    import time

    from fleetwatch.dispatch.holds import hold_for

    while hold_for(host_id, time.time(), hold, interval) < share * hold:
        time.sleep(0.01)
