"""Fleets of simulated hosts end to end: against the real server on both backends (enroll,
config, live queries, result logs with and without gzip, re-enrollment after the host is
deleted), and against the test server for churn."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from fleetwatch.sim import AgentFlags, Churn, Fleet
from tests.server import RunningServer
from tests.sim.agent_server import READ, AgentServer

SECRET = "test-enroll-secret"
QUICK = AgentFlags(retry_unit=0.1, tls_enroll_max_interval=1)


async def eventually(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_live_queries_and_result_logs_with_and_without_gzip(
    live_server: RunningServer, api: httpx.AsyncClient
) -> None:
    config = {
        "options": {"logger_tls_period": 1},
        "schedule": {"os": {"query": "SELECT name, platform FROM os_version", "interval": 1}},
    }
    assert (await api.put("/api/v1/fleet/config", json=config)).status_code == 200
    plain = Fleet(live_server.url, SECRET, 2, seed=1, platforms="ubuntu,windows", flags=QUICK)
    gzipped = Fleet(
        live_server.url,
        SECRET,
        2,
        seed=2,
        platforms="darwin,centos",
        flags=AgentFlags(logger_tls_compress=True, retry_unit=0.1),
    )
    async with plain, gzipped:
        for fleet in (plain, gzipped):
            await fleet.wait_enrolled(20)
            await fleet.wait_configured(20)
        hosts = plain.hosts + gzipped.hosts
        reply = await api.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT hostname FROM system_info", "targets": [{"type": "all"}],
                  "wait": 20},
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "finished"
        answered = {r["hostname"]: r for r in body["results"]}
        assert set(answered) == {h.hostname for h in hosts}
        name = f"fleet_distributed_query_{body['campaign_id']}"
        # The campaign finishes as the last result is stored, before that host has read the
        # server's reply to its write (which is when it counts the result as sent).
        await plain.wait_until(
            lambda: all(name in {r.name for r in h.results_sent} for h in hosts),
            10,
            "writes acknowledged",
        )
        for host in hosts:
            assert answered[host.hostname]["status"] == "complete"
            assert answered[host.hostname]["rows"] == [{"hostname": host.hostname}]
            assert name in {q.name for q in host.received_queries}

        listed = (await api.get("/api/v1/fleet/hosts")).json()["hosts"]
        ids = {h["hostname"]: h["id"] for h in listed}

        async def every_host_logged() -> bool:
            for host in hosts:
                logs = await api.get(f"/api/v1/fleet/hosts/{ids[host.hostname]}/logs?type=result")
                if not logs.json()["logs"]:
                    return False
            return True

        await eventually(every_host_logged)
        for host in gzipped.hosts:
            assert host.flags.logger_tls_compress and host.stats.result_lines_sent >= 1
        assert plain.totals().loop_crashes == gzipped.totals().loop_crashes == 0


async def test_a_deleted_host_enrolls_again(
    live_server: RunningServer, api: httpx.AsyncClient
) -> None:
    async with Fleet(live_server.url, SECRET, 2, seed=5, platforms="ubuntu", flags=QUICK) as fleet:
        await fleet.wait_enrolled(20)
        host = fleet.hosts[0]

        async def listed() -> dict[str, int]:
            hosts = (await api.get("/api/v1/fleet/hosts")).json()["hosts"]
            return {h["hostname"]: h["id"] for h in hosts}

        async def both_listed() -> bool:
            return {h.hostname for h in fleet.hosts} <= set(await listed())

        await eventually(both_listed)
        old_id = (await listed())[host.hostname]
        assert (await api.delete(f"/api/v1/fleet/hosts/{old_id}")).status_code == 200

        async def back() -> bool:
            return host.stats.enrollments == 2 and host.hostname in await listed()

        await eventually(back)
        assert host.stats.node_invalid >= 1
        assert (await listed())[host.hostname] != old_id
        assert fleet.hosts[1].stats.enrollments == 1


async def test_offline_hosts_stop_checking_in_after_enrolling() -> None:
    server = AgentServer(config={"options": {"distributed_interval": 0.05}})
    url = await server.start()
    try:
        churn = Churn(offline_fraction=0.5)
        async with Fleet(url, "s3cret", 12, seed=9, churn=churn, flags=QUICK) as fleet:
            await fleet.wait_enrolled(10)
            await fleet.wait_until(lambda: fleet.totals().online < 12, 5, "hosts offline")
            offline = {h.node_key for h in fleet.hosts if not h.online}
            assert 2 <= len(offline) <= 10
            await asyncio.sleep(0.3)  # a read in flight when going offline may finish
            before = len(server.to(READ))
            await asyncio.sleep(0.5)
            later = [r.doc["node_key"] for r in server.to(READ)[before:]]
            assert later and not offline & set(later)
    finally:
        await server.close()
