"""Per-host rows: every table matches its schema, processes churn, agent facts show."""

from __future__ import annotations

from fleetwatch.sim.inventory import AgentFacts, HostInventory
from fleetwatch.sim.platforms import PLATFORMS
from fleetwatch.sim.profile import make_profile
from fleetwatch.sim.schemas import SCHEMAS, tables_for

NOW = 1_760_000_000.0


def test_every_per_host_table_matches_its_schema_on_every_platform() -> None:
    for name in PLATFORMS:
        inventory = HostInventory(make_profile(3, 1, name, NOW), AgentFacts())
        for schema in tables_for(PLATFORMS[name].family):
            if not schema.per_host:
                continue
            rows = inventory.rows(schema.name, NOW)
            assert rows, f"{name}: {schema.name} is empty"
            assert all(len(row) == len(schema.columns) for row in rows), schema.name


def test_processes_churn_between_generations_and_pids_stay_unique() -> None:
    inventory = HostInventory(make_profile(5, 2, "ubuntu", NOW), AgentFacts(), churn_period=10)
    start = inventory.profile.start_time
    before = {(p.pid, p.spec.name) for p in inventory.processes_at(start)}
    after = {(p.pid, p.spec.name) for p in inventory.processes_at(start + 60)}
    assert before != after
    assert before & after  # daemons keep running
    for moment in (start, start + 60, start + 6000):
        pids = [p.pid for p in inventory.processes_at(moment)]
        assert len(pids) == len(set(pids))


def test_frozen_processes_without_churn() -> None:
    inventory = HostInventory(make_profile(5, 2, "darwin", NOW), AgentFacts(), churn_period=0)
    start = inventory.profile.start_time
    assert [p.pid for p in inventory.processes_at(start)] == [
        p.pid for p in inventory.processes_at(start + 10_000)
    ]


def test_agent_facts_show_in_osquery_flags_and_info() -> None:
    facts = AgentFacts()
    inventory = HostInventory(make_profile(5, 2, "ubuntu", NOW), facts)
    key_before = inventory.cache_key("osquery_flags", NOW)
    facts.update(config_hash="abc", flags={"distributed_interval": "3"})
    assert inventory.cache_key("osquery_flags", NOW) != key_before
    flags = {row[0]: row[4] for row in inventory.rows("osquery_flags", NOW)}
    assert flags["distributed_interval"] == "3"
    info = dict(
        zip(
            SCHEMAS["osquery_info"].column_names,
            inventory.rows("osquery_info", NOW)[0],
            strict=True,
        )
    )
    assert info["config_hash"] == "abc" and info["config_valid"] == 1
