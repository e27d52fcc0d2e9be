"""Parsing the osquery config: schedule, packs, decorators; bad entries are skipped."""

from __future__ import annotations

import pytest

from fleetwatch.sim.agent_config import (
    MAX_CONFIG_BYTES,
    ConfigCache,
    ConfigRejected,
    ScheduledQuery,
    applies_to,
    parse_config,
)

LINUX = frozenset({"linux", "ubuntu", "posix", "all", "any"})


def test_schedule_packs_and_decorators() -> None:
    config = parse_config(
        {
            "options": {"distributed_interval": 5},
            "schedule": {"procs": {"query": "SELECT pid FROM processes", "interval": "60"}},
            "packs": {
                "mine": {
                    "platform": "linux",
                    "discovery": ["SELECT 1 FROM os_version WHERE platform = 'ubuntu'"],
                    "queries": {"q1": {"query": "SELECT 1", "interval": 10, "snapshot": True}},
                }
            },
            "decorators": {
                "load": ["SELECT uuid AS host_uuid FROM system_info"],
                "always": ["SELECT 'x' AS always"],
                "interval": {"3600": ["SELECT total_seconds AS uptime FROM uptime"]},
            },
            "node_invalid": False,
        },
        100,
        b"raw",
    )
    procs, q1 = config.schedule
    assert procs == ScheduledQuery("procs", "SELECT pid FROM processes", 60)
    assert q1.pack == "mine" and q1.snapshot and q1.platform == "linux"
    assert q1.log_name("_") == "pack_mine_q1" and q1.log_name("/") == "pack/mine/q1"
    assert q1.discovery == ("SELECT 1 FROM os_version WHERE platform = 'ubuntu'",)
    assert config.decorators.interval == ((3600, ("SELECT total_seconds AS uptime FROM uptime",)),)
    assert config.options == {"distributed_interval": 5}
    assert config.hash and not config.warnings


def test_bad_entries_are_skipped_with_a_warning() -> None:
    config = parse_config(
        {
            "schedule": {
                "no_sql": {"interval": 10},
                "no_interval": {"query": "SELECT 1", "interval": 0},
                "not_object": "SELECT 1",
                "fine": {"query": "SELECT 1"},
            },
            "packs": {"external": "/etc/osquery/packs/x.conf"},
        },
        10,
    )
    assert [q.query_name for q in config.schedule] == ["fine"]
    assert config.schedule[0].interval == 3600
    assert len(config.warnings) == 4


@pytest.mark.parametrize(("doc", "size"), [([], 2), ({}, MAX_CONFIG_BYTES + 1)])
def test_unusable_configs_are_rejected(doc: object, size: int) -> None:
    with pytest.raises(ConfigRejected):
        parse_config(doc, size)


def test_platform_version_and_shard_filters() -> None:
    assert applies_to(ScheduledQuery("a", "s", 1, platform="linux"), LINUX, 50)
    assert not applies_to(ScheduledQuery("a", "s", 1, platform="darwin,windows"), LINUX, 50)
    assert applies_to(ScheduledQuery("a", "s", 1, platform="posix"), LINUX, 50)
    assert not applies_to(ScheduledQuery("a", "s", 1, version="9.0.0"), LINUX, 50)
    assert applies_to(ScheduledQuery("a", "s", 1, version="5.2.0"), LINUX, 50)
    assert not applies_to(ScheduledQuery("a", "s", 1, shard=10), LINUX, 50)
    assert applies_to(ScheduledQuery("a", "s", 1, shard=60), LINUX, 50)


def test_cache_parses_equal_bytes_once() -> None:
    cache = ConfigCache(size=2)
    first = cache.parse({"schedule": {}}, b'{"schedule":{}}')
    assert cache.parse({"schedule": {}}, b'{"schedule":{}}') is first
    cache.parse({}, b"{}")
    cache.parse({}, b"{ }")
    assert cache.parse({"schedule": {}}, b'{"schedule":{}}') is not first
