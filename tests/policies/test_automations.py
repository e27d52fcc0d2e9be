"""Policy webhooks end to end: a real server with agents and a real receiver on 127.0.0.1,
on SQLite and PostgreSQL. A host flipping fail -> pass -> fail is seen as events in order,
retried with backoff through failures, and repeated with the same `seq` after a restart
that lost the delivery's record."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from fleetwatch.config import Settings
from fleetwatch.storage.schema import query_task_subscriptions as subscriptions
from tests.agent import Agent
from tests.api.test_policies import checkin, wait_counts
from tests.conftest import login
from tests.policies.cluster import SECRET, two_nodes
from tests.receiver import EVENTS, Receiver, running_receiver
from tests.server import RunningServer, running_server
from tests.services import PostgresServer


@pytest.fixture
def server_settings(server_settings: Settings) -> Settings:
    """The receiver is on loopback, which webhooks may call only when allowed."""
    return server_settings.model_copy(update={"outbound_allow": "127.0.0.0/8"})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(EVENTS) as running:
        yield running


def test_failing_and_passing_events_in_order(
    live_server: RunningServer, admin_token: str, receiver: Receiver
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    with (
        httpx.Client(base_url=live_server.url, headers=auth) as api,
        httpx.Client(base_url=live_server.url) as agents_client,
    ):
        a, b = (Agent(agents_client, "test-enroll-secret", f"e{i}", f"eu{i}") for i in range(2))
        for agent in (a, b):
            agent.enroll()
        policy = api.post(
            "/api/v1/fleet/policies", json={"name": "firewall", "query": "SELECT 1", "interval": 1}
        ).json()["policy"]
        path = f"/api/v1/fleet/policies/{policy['id']}"
        for name, behaviour in (("steady", "ok"), ("flaky", "flaky:2")):
            made = api.post(f"{path}/webhooks", json={"url": receiver.endpoint(name, behaviour)})
            assert made.status_code == 201, made.text
        assert len(api.get(f"{path}/webhooks").json()["webhooks"]) == 2
        pid = policy["id"]
        checkin(a, {pid: [{"1": "1"}]})  # a new host passing: no event
        checkin(b, {pid: []})  # a new host failing: an event
        wait_counts(api, path, (1, 1, 0))
        for rows in ([{"1": "1"}], []):  # b passes, then fails again
            time.sleep(1.05)  # the policy's interval: b is asked again
            checkin(b, {pid: rows})
        wait_counts(api, path, (1, 1, 0))
        steady = receiver.wait_for("steady", 3)
        host = {"id": steady[0]["host"]["id"], "hostname": "e1", "team_id": None}
        assert [(e["event"], e["previous"], e["host"]) for e in steady] == [
            ("failing", "", host),
            ("passing", "fail", host),
            ("failing", "pass", host),
        ]
        assert all(e["policy"] == {"id": pid, "name": "firewall"} for e in steady)
        seqs = [e["seq"] for e in steady]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        # the flaky receiver failed twice and got the same events, in order, by retrying
        assert receiver.wait_for("flaky", 3) == steady
        assert receiver.attempts["flaky"] == 5
        # an error answer leaves the failing set without passing: no event
        time.sleep(1.05)
        checkin(b, {pid: None})
        wait_counts(api, path, (1, 0, 1))
        checkin(a, {pid: []})  # a starts failing
        assert [e["host"]["hostname"] for e in receiver.wait_for("steady", 4)] == ["e1"] * 3 + [
            "e0"
        ]
        hook_id = api.get(f"{path}/webhooks").json()["webhooks"][0]["id"]
        assert api.delete(f"{path}/webhooks/{hook_id}").status_code == 200
        assert api.delete(f"{path}/webhooks/{hook_id}").status_code == 404


def test_an_undelivered_event_is_sent_again_with_the_same_seq_after_a_restart(
    server_settings: Settings, receiver: Receiver
) -> None:
    """At least once: a delivery whose record was lost (a crash between the POST and saving
    the cursor) is repeated after the restart, with the same `seq`."""
    with running_server(server_settings) as server:
        token = login(server)
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        agents_client = httpx.Client(base_url=server.url)
        agent = Agent(agents_client, "test-enroll-secret", "r0", "ru0")
        agent.enroll()
        policy = api.post(
            "/api/v1/fleet/policies", json={"name": "disk", "query": "SELECT 1"}
        ).json()["policy"]
        path = f"/api/v1/fleet/policies/{policy['id']}"
        hook = api.post(f"{path}/webhooks", json={"url": receiver.endpoint("r")}).json()["webhook"]
        checkin(agent, {policy["id"]: []})
        (event,) = receiver.wait_for("r", 1)
        assert event["event"] == "failing"

        async def stored_cursor() -> int:
            async with server.services.db.connect() as conn:
                row = await conn.execute(
                    select(subscriptions.c.last_delivered_seq).where(
                        subscriptions.c.id == hook["id"]
                    )
                )
                return int(row.scalar_one())

        async def forget_delivery() -> None:
            async with server.services.db.transaction() as conn:
                await conn.execute(
                    update(subscriptions)
                    .where(subscriptions.c.id == hook["id"])
                    .values(last_delivered_seq=hook["last_seq"])
                )

        deadline = time.monotonic() + 30
        while server.call(stored_cursor()) != event["seq"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.call(stored_cursor()) == event["seq"]
        server.call(forget_delivery())
        api.close()
        agents_client.close()
    with running_server(server_settings):
        again = receiver.wait_for("r", 2)
        assert again == [event, event]


def test_events_reach_the_log_destinations(server_settings: Settings, tmp_path: Path) -> None:
    settings = server_settings.model_copy(update={"log_forward_dir": tmp_path / "forwarded"})
    with running_server(settings) as server, httpx.Client(base_url=server.url) as agents_client:
        token = login(server)
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        agent = Agent(agents_client, "test-enroll-secret", "f0", "fu0")
        agent.enroll()
        policy = api.post(
            "/api/v1/fleet/policies", json={"name": "av", "query": "SELECT 1", "interval": 1}
        ).json()["policy"]
        checkin(agent, {policy["id"]: []})
        time.sleep(1.05)
        checkin(agent, {policy["id"]: [{"1": "1"}]})
        events = tmp_path / "forwarded" / "fleet_policy_events.log"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            not events.exists() or len(events.read_text().splitlines()) < 2
        ):
            time.sleep(0.02)
        lines = [json.loads(line) for line in events.read_text().splitlines()]
        assert [(e["event"], e["previous"], e["host"]["hostname"]) for e in lines] == [
            ("failing", "", "f0"),
            ("passing", "fail", "f0"),
        ]
        api.close()


def test_a_webhook_added_on_one_node_is_delivered_by_the_other(
    pg_server: PostgresServer, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Node A holds the webhooks lease; the policy, its webhook and the failing answer all
    come through node B. A learns of the webhook over the bus and delivers, no restart."""
    with (
        two_nodes(pg_server, redis_url, tmp_path) as (a, b, api_a, api_b),
        httpx.Client(base_url=b.url) as agents_b,
    ):
        assert a.services.query_tasks.webhook_lease.held
        assert not b.services.query_tasks.webhook_lease.held
        agent = Agent(agents_b, SECRET, "c0", "cu0")
        agent.enroll()
        policy = api_b.post(
            "/api/v1/fleet/policies", json={"name": "edr", "query": "SELECT 1"}
        ).json()["policy"]
        path = f"/api/v1/fleet/policies/{policy['id']}"
        made = api_b.post(f"{path}/webhooks", json={"url": receiver.endpoint("c")})
        assert made.status_code == 201, made.text
        hook_id = made.json()["webhook"]["id"]
        # both nodes list it (A from the shared subscription table)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not api_a.get(f"{path}/webhooks").json()["webhooks"]:
            time.sleep(0.05)
        assert [h["id"] for h in api_a.get(f"{path}/webhooks").json()["webhooks"]] == [hook_id]
        checkin(agent, {policy["id"]: []})
        (event,) = receiver.wait_for("c", 1, timeout=15)
        assert (event["event"], event["host"]["hostname"], event["previous"]) == (
            "failing",
            "c0",
            "",
        )
