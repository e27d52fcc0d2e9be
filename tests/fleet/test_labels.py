"""Dynamic labels answered for real: a simulated fleet of mixed platforms runs each label's
SQL on its own tables, and membership is exactly the hosts whose data matches; a label
query that fails on some hosts leaves their membership unknown (unchanged), not false.
Against the real server on both backends. And a new label is asked at the next check-in
even when answers to queries handed out before it arrive afterwards."""

from __future__ import annotations

import time

import httpx

from fleetwatch.config import Settings
from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.labels import LabelService
from fleetwatch.index import DocumentIndex
from fleetwatch.sim import AgentFlags, Fleet
from fleetwatch.sim.host import SimHost
from fleetwatch.storage import Database
from tests.agent import details_for
from tests.server import RunningServer

SECRET = "test-enroll-secret"
PLATFORMS = "ubuntu=3,darwin=2,windows=2,centos=1"
#: Ubuntu 22.04 or later, or at least 32 GiB of memory: true for some hosts of each kind.
MODERN_OR_BIG = (
    "SELECT 1 FROM os_version o, system_info s WHERE "
    "(o.platform = 'ubuntu' AND CAST(o.major AS INTEGER) >= 22) "
    "OR CAST(s.physical_memory AS INTEGER) >= 34359738368"
)
#: A table only Linux hosts have: the query fails elsewhere ("no such table").
DEBIAN_ONLY = "SELECT 1 FROM deb_packages WHERE name = 'no-such-package'"


def matches(host: SimHost) -> bool:
    """MODERN_OR_BIG decided in Python from the host's own rows (not by the label's SQL)."""
    os_row = host.query("SELECT platform, major FROM os_version").rows[0]
    memory = int(host.query("SELECT physical_memory FROM system_info").rows[0]["physical_memory"])
    return (os_row["platform"] == "ubuntu" and int(os_row["major"]) >= 22) or memory >= 2**35


def answered(host: SimHost, name: str, sql: str) -> bool:
    """The host received `sql` as `name` and its answer to it reached the server."""
    asked = [q.received_at for q in host.received_queries if q.name == name and q.sql == sql]
    return bool(asked) and any(r.name == name and r.sent_at >= asked[-1] for r in host.results_sent)


async def members(api: httpx.AsyncClient, label_id: int) -> set[str]:
    reply = await api.get(f"/api/v1/fleet/labels/{label_id}/hosts")
    assert reply.status_code == 200, reply.text
    return {h["hostname"] for h in reply.json()["hosts"]}


async def create_label(api: httpx.AsyncClient, name: str, sql: str) -> int:
    reply = await api.post("/api/v1/fleet/labels", json={"name": name, "query": sql})
    assert reply.status_code == 201, reply.text
    label_id: int = reply.json()["label"]["id"]
    return label_id


async def test_membership_is_what_the_simulated_hosts_tables_say(
    live_server: RunningServer, api: httpx.AsyncClient
) -> None:
    fleet = Fleet(
        live_server.url, SECRET, 8, seed=5, platforms=PLATFORMS, flags=AgentFlags(retry_unit=0.1)
    )
    async with fleet:
        await fleet.wait_enrolled(30)
        expected = {h.hostname for h in fleet.hosts if matches(h)}
        assert 0 < len(expected) < len(fleet.hosts)  # the label tells hosts apart
        label_id = await create_label(api, "modern or big", MODERN_OR_BIG)
        name = f"fleet_label_query_{label_id}"
        await fleet.wait_until(
            lambda: all(answered(h, name, MODERN_OR_BIG) for h in fleet.hosts),
            60,
            "every host answered the label",
        )
        assert await members(api, label_id) == expected
        label = (await api.get(f"/api/v1/fleet/labels/{label_id}")).json()["label"]
        assert label["host_count"] == len(expected)
        # membership is on each host, as the API and its fleet:host document show it
        listed = (await api.get("/api/v1/fleet/hosts", params={"label_id": label_id})).json()
        assert {h["hostname"] for h in listed["hosts"]} == expected
        for host in (await api.get("/api/v1/fleet/hosts")).json()["hosts"]:
            labelled = label_id in {lab["id"] for lab in host["labels"]}
            assert labelled == (host["hostname"] in expected), host["hostname"]


async def test_a_failing_label_query_leaves_membership_unknown_not_false(
    live_server: RunningServer, api: httpx.AsyncClient
) -> None:
    fleet = Fleet(
        live_server.url, SECRET, 8, seed=6, platforms=PLATFORMS, flags=AgentFlags(retry_unit=0.1)
    )
    async with fleet:
        await fleet.wait_enrolled(30)
        everyone = "SELECT 1 FROM system_info"
        label_id = await create_label(api, "changing", everyone)
        name = f"fleet_label_query_{label_id}"
        await fleet.wait_until(
            lambda: all(answered(h, name, everyone) for h in fleet.hosts), 60, "first answers"
        )
        assert await members(api, label_id) == {h.hostname for h in fleet.hosts}
        # a continuous query watches the label's members (through the fleet:host documents)
        watch = await api.post(
            "/core/local-query-tasks",
            json={
                "querySpec": {
                    "query": {
                        "booleanClauses": [
                            {"term": {"propertyName": "documentKind", "matchValue": "fleet:host"}},
                            {"term": {"propertyName": "labels.item.id", "matchValue": label_id}},
                        ]
                    },
                    "options": ["CONTINUOUS", "CONTINUOUS_STOP_MATCH", "COUNT"],
                },
                "documentExpirationTimeMicros": 2**63 - 1,
            },
        )
        assert watch.status_code == 202, watch.text
        assert watch.json()["results"]["documentCount"] == len(fleet.hosts)

        # Now a query that matches no host where it runs, and fails where the table is missing.
        changed = await api.patch(f"/api/v1/fleet/labels/{label_id}", json={"query": DEBIAN_ONLY})
        assert changed.status_code == 200, changed.text
        await fleet.wait_until(
            lambda: all(answered(h, name, DEBIAN_ONLY) for h in fleet.hosts), 60, "new answers"
        )
        failing = {h.hostname for h in fleet.hosts if not h.query(DEBIAN_ONLY).ok}
        assert 0 < len(failing) < len(fleet.hosts)  # darwin and windows lack deb_packages
        for host in fleet.hosts:
            last = [r for r in host.results_sent if r.name == name][-1]
            assert (last.status != 0) == (host.hostname in failing)
            assert last.rows == []
        # an empty answer is false (the Linux hosts left); a failure is unknown (kept)
        assert await members(api, label_id) == failing
        counted = (await api.get(watch.json()["documentSelfLink"])).json()["results"]
        assert counted["documentCount"] == len(failing)
        assert counted["continuousResults"]["documentCountStopMatched"] == len(fleet.hosts) - len(
            failing
        )

        # a new label whose query fails on some hosts: those are not members (never known)
        new_id = await create_label(api, "debian only", "SELECT 1 FROM deb_packages LIMIT 1")
        new_name = f"fleet_label_query_{new_id}"
        sql = "SELECT 1 FROM deb_packages LIMIT 1"
        await fleet.wait_until(
            lambda: all(answered(h, new_name, sql) for h in fleet.hosts), 60, "answers"
        )
        assert await members(api, new_id) == {h.hostname for h in fleet.hosts if h.query(sql).rows}


async def test_answers_to_queries_sent_before_a_new_label_do_not_hide_it(
    db: Database, index: DocumentIndex
) -> None:
    settings = Settings(distributed_hold=10)
    hosts = HostService(db, index, settings)
    await hosts.load()
    labels = LabelService(db, index, hosts, settings)
    await labels.load()
    host, _ = await hosts.enroll("h1", "9", details_for("h1", "u1"), None)
    first = labels.queries_for(host, time.time())  # the built-in labels
    created = await labels.create({"name": "new", "query": "SELECT 1"})
    new_name = f"fleet_label_query_{created['id']}"
    assert new_name not in first
    # the answers to the queries handed out before the label existed arrive afterwards
    await labels.ingest(host, [DistributedResult(name, [{"1": "1"}], 0, "") for name in first])
    asked = labels.queries_for(host, time.time())
    assert new_name in asked  # still due: asked at the next check-in, not in an hour
    await labels.ingest(host, [DistributedResult(name, [], 0, "") for name in asked])
    assert labels.queries_for(host, time.time()) == {}  # all answered: due in label_interval
    await hosts.stop()
