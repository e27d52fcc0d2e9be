"""Host bookkeeping: seen_time batched (no write per check-in), Fleet's online rule, status
transitions mirrored into the host's document."""

from __future__ import annotations

import time

from sqlalchemy import select

from fleetwatch.config import Settings
from fleetwatch.fleet.hosts import HostService, HostState, inventory_from_details
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
