"""Host bookkeeping: seen_time batched (no write per check-in), Fleet's online rule, status
transitions mirrored into the host's document."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from sqlalchemy import event, select

from fleetwatch.config import Settings
from fleetwatch.fleet.host_inventory import inventory_from_details
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.hosts import HostService
from fleetwatch.fleet.teams import TeamService
from fleetwatch.index import DocumentIndex
from fleetwatch.storage import Database
from fleetwatch.storage.schema import hosts
from tests.agent import details_for


async def seen_in_db(db: Database, host_id: int) -> float | None:
    async with db.connect() as conn:
        value = (
            await conn.execute(select(hosts.c.seen_time).where(hosts.c.id == host_id))
        ).scalar()
    return None if value is None else float(value)


async def test_seen_time_is_written_in_batches(db: Database, index: DocumentIndex) -> None:
    service = HostService(db, index, Settings(distributed_hold=10))
    await service.load()
    host, _ = await service.enroll("h1", "9", details_for("h1", "u1"), None)
    enrolled_seen = await seen_in_db(db, host.id)
    for _ in range(50):
        service.mark_seen(host, time.time() + 5)
    # fifty check-ins, no write yet
    assert await seen_in_db(db, host.id) == enrolled_seen
    await service.flush()
    assert await seen_in_db(db, host.id) == host.seen_time


async def test_a_flush_cut_short_keeps_its_seen_times(db: Database, index: DocumentIndex) -> None:
    """Shutdown cancelling a flush inside its write must not drop the hosts it took."""
    service = HostService(db, index, Settings(distributed_hold=10))
    await service.load()
    host, _ = await service.enroll("h1", "9", details_for("h1", "u1"), None)
    service.mark_seen(host, time.time() + 5)
    flush = asyncio.create_task(service.flush())
    await asyncio.sleep(0)  # the flush has taken the dirty hosts and entered its write
    flush.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flush
    await service.flush()
    assert await seen_in_db(db, host.id) == host.seen_time


async def test_online_rule_and_status_documents(db: Database, index: DocumentIndex) -> None:
    settings = Settings(distributed_hold=10, distributed_interval=10)
    service = HostService(db, index, settings)
    await service.load()
    host, _ = await service.enroll("h1", "9", details_for("h1", "u1"), None)
    now = time.time()
    # interval 10 + hold 10 + Fleet's 60 s buffer
    host.seen_time = now - 79
    assert service.status(host, now) == "online"
    host.seen_time = now - 81
    assert service.status(host, now) == "offline"
    doc = await index.get(f"/fleet/hosts/{host.id}")
    assert doc is not None and doc.body["status"] == "online"
    await service.flush()
    doc = await index.get(f"/fleet/hosts/{host.id}")
    assert doc is not None and doc.body["status"] == "offline"
    assert doc.body["documentUpdateAction"] == "PATCH"
    # a check-in brings it back, reported once
    service.mark_seen(host)
    await service.flush()
    await service.flush()
    changes = [c for c in await index.read_changes(0) if c.self_link == f"/fleet/hosts/{host.id}"]
    assert [c.body["status"] for c in changes] == ["online", "offline", "online"]


async def test_reload_keeps_node_keys_working(db: Database, index: DocumentIndex) -> None:
    service = HostService(db, index, Settings())
    await service.load()
    host, key = await service.enroll("h1", "9", details_for("h1", "u1"), None)
    restarted = HostService(db, index, Settings())
    await restarted.load()
    found = restarted.by_node_key(key)
    assert isinstance(found, HostState) and found.id == host.id
    assert restarted.by_node_key("not-a-key") is None
    assert restarted.by_node_key("") is None


async def test_a_reenroll_never_changes_a_hosts_team(db: Database, index: DocumentIndex) -> None:
    teams = TeamService(db, index)
    await teams.load()
    team_a = (await teams.create({"name": "a"}))["id"]
    team_b = (await teams.create({"name": "b"}))["id"]
    service = HostService(db, index, Settings())
    await service.load()
    host, key_b = await service.enroll("h1", "9", details_for("h1", "u1"), team_b)
    # another team's secret, same identifier: a new host of that team
    other, key_a = await service.enroll("h1", "9", details_for("h1", "u1"), team_a)
    assert other.id != host.id and other.team_id == team_a
    # same hardware uuid under another identifier, with a global secret: new host too
    unteamed, _ = await service.enroll("h2", "9", details_for("h2", "u1"), None)
    assert unteamed.id not in (host.id, other.id) and unteamed.team_id is None
    # the real host keeps its team and key, in memory and in the table
    for view in (service, await _loaded(db, index)):
        found = view.by_node_key(key_b)
        assert found is not None and found.id == host.id and found.team_id == team_b
        same_a = view.by_node_key(key_a)
        assert same_a is not None and same_a.id == other.id
    # within a team, re-enrolling (by identifier or by uuid) re-keys the same host
    again, new_key = await service.enroll("h1-renamed", "9", details_for("h", "u1"), team_b)
    assert again.id == host.id and again.team_id == team_b
    assert service.by_node_key(key_b) is None and service.by_node_key(new_key) is again
    async with db.connect() as conn:
        rows = (await conn.execute(select(hosts.c.id, hosts.c.team_id))).all()
    assert sorted((r.id, r.team_id) for r in rows) == sorted(
        [(host.id, team_b), (other.id, team_a), (unteamed.id, None)]
    )


async def _loaded(db: Database, index: DocumentIndex) -> HostService:
    service = HostService(db, index, Settings())
    await service.load()
    return service


def test_inventory_from_details_is_strings_in_typed_out() -> None:
    inventory = inventory_from_details(details_for("web", "u"), "9")
    assert inventory["hostname"] == "web"
    assert inventory["platform"] == "ubuntu"
    assert inventory["cpu_logical_cores"] == 8
    assert inventory["physical_memory"] == 17179869184
    assert inventory["os_version"] == "Ubuntu 22.04.4 LTS (Jammy Jellyfish)"
    # platform from the bitmask when os_version is missing
    assert inventory_from_details({}, "16")["platform"] == "darwin"
    assert inventory_from_details({}, "2")["platform"] == "windows"
    assert inventory_from_details({"system_info": "garbage"}, "x")["hostname"] == ""


async def test_concurrent_enrollments_share_transactions(
    db: Database, index: DocumentIndex
) -> None:
    service = HostService(db, index, Settings())
    await service.load()
    names = [f"h{i}" for i in range(40)]
    # h3 enrolls twice in the same burst and h7 again by its hardware uuid alone
    requests = [*names, "h3"]
    details = [details_for(n, f"u-{n}") for n in requests]
    details.append(details_for("h7-renamed", "u-h7"))
    requests.append("h7-renamed")
    enrolled = await asyncio.gather(
        *(service.enroll(n, "9", d, None) for n, d in zip(requests, details, strict=True))
    )
    ids = [host.id for host, _ in enrolled]
    assert len(set(ids[:40])) == 40
    assert ids[40] == ids[3] and ids[41] == ids[7]
    # only the latest key of a host that enrolled twice works
    assert service.by_node_key(enrolled[3][1]) is None
    assert service.by_node_key(enrolled[40][1]) is enrolled[40][0]
    assert service.by_node_key(enrolled[41][1]) is enrolled[41][0]
    assert enrolled[41][0].host_identifier == "h7-renamed"
    # fewer transactions than enrollments: they arrived while the first was being written
    assert service._enrollments.batches < len(requests)
    for host_id in set(ids):
        # the document is what the API shows (built from the written row, not read back)
        doc = await index.get(f"/fleet/hosts/{host_id}")
        assert doc is not None
        api = await service.get(host_id)
        assert {k: doc.body[k] for k in api} == api


async def test_inventory_updates_merge_into_the_stored_inventory(
    db: Database, index: DocumentIndex
) -> None:
    service = HostService(db, index, Settings())
    await service.load()
    one, _ = await service.enroll("h1", "9", details_for("h1", "u1"), None)
    two, _ = await service.enroll("h2", "9", details_for("h2", "u2"), None)
    before = (await service.get(one.id))["inventory"]
    await asyncio.gather(
        service.apply_inventory(one, {"hostname": "web-1", "primary_ip": "10.0.0.1"}),
        service.apply_inventory(two, {"uptime": "42", "distributed_interval": 7}),
    )
    got = await service.get(one.id)
    assert got["hostname"] == "web-1" and one.hostname == "web-1"
    assert got["inventory"] == {**before, "hostname": "web-1", "primary_ip": "10.0.0.1"}
    assert got["primary_ip"] == "10.0.0.1" and got["detail_updated_at"] is not None
    assert two.distributed_interval == 7
    assert (await service.get(two.id))["uptime"] == "42"
    for host in (one, two):
        doc = await index.get(f"/fleet/hosts/{host.id}")
        assert doc is not None
        api = await service.get(host.id)
        assert {k: doc.body[k] for k in api} == api
    # a host deleted while its answers were in flight is not brought back
    await service.delete(two.id)
    await service.apply_inventory(two, {"uptime": "43"})
    assert await index.get(f"/fleet/hosts/{two.id}") is None


async def test_a_big_seen_flush_lets_the_loop_run_between_its_statements(
    db: Database, index: DocumentIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parameters of a flush are built on the event loop: 10,000 hosts' seen times in
    one statement held every request up. In slices, other work runs between them."""
    monkeypatch.setattr("fleetwatch.fleet.host_seen.SEEN_FLUSH_SLICE", 4, raising=False)
    service = HostService(db, index, Settings(distributed_hold=10))
    await service.load()
    enrolled = await asyncio.gather(
        *(service.enroll(f"h{i}", "9", details_for(f"h{i}", f"u{i}"), None) for i in range(10))
    )
    await service.flush()
    written: list[int] = []

    def count(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE HOSTS"):
            written.append(len(params) if isinstance(params, list) else 1)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        for host, _ in enrolled:
            service.mark_seen(host, time.time() + 5)
        observed: list[int] = []
        flush = asyncio.create_task(service.flush())
        while not flush.done():
            observed.append(sum(written))
            await asyncio.sleep(0)
        await flush
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert sum(written) == 10
    # Other work ran while some but not all of the hosts had been written.
    assert any(0 < n < 10 for n in observed), observed
    for host, _ in enrolled:
        assert await seen_in_db(db, host.id) == host.seen_time
