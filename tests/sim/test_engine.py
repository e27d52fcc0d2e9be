"""Real SQL against each host's tables: string values, osquery's error texts, isolation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetwatch.sim.engine import Engines, ReleaseDatabase
from fleetwatch.sim.inventory import AgentFacts, HostInventory
from fleetwatch.sim.platforms import PLATFORMS
from fleetwatch.sim.profile import make_profile

NOW = 1_760_000_000.0


def _host(index: int, platform: str = "ubuntu") -> HostInventory:
    return HostInventory(make_profile(11, index, platform, NOW), AgentFacts())


@pytest.fixture
def engines() -> Iterator[Engines]:
    engines = Engines()
    yield engines
    engines.close()


def test_values_are_strings_and_null_is_empty(engines: Engines) -> None:
    result = engines.query(_host(1), "SELECT pid, name, NULL AS blank, 1.5 AS x FROM processes")
    assert result.ok and result.rows
    row = result.rows[0]
    assert all(isinstance(v, str) for v in row.values())
    assert row["blank"] == "" and row["x"] == "1.5"


def test_numeric_columns_compare_as_numbers(engines: Engines) -> None:
    rows = engines.query(_host(1), "SELECT pid FROM processes WHERE pid > 100").rows
    assert rows and all(int(r["pid"]) > 100 for r in rows)


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELECT * FROM foo", "no such table: foo"),
        ("SELEC 1", 'near "SELEC": syntax error'),
        ("SELECT nope FROM processes", "no such column: nope"),
        ("DELETE FROM processes", "not authorized"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "not authorized"),
        ("PRAGMA writable_schema = 1", "not authorized"),
    ],
)
def test_errors_are_sqlite_texts(engines: Engines, sql: str, error: str) -> None:
    result = engines.query(_host(1), sql)
    assert result.rows == [] and result.error == error


def test_hosts_sharing_a_database_see_their_own_rows(engines: Engines) -> None:
    first = _host(1)
    second = next(h for h in map(_host, range(2, 50)) if h.profile.variant == first.profile.variant)
    for host in (first, second, first):
        rows = engines.query(host, "SELECT hostname, uuid FROM system_info").rows
        assert rows == [{"hostname": host.profile.hostname, "uuid": host.profile.uuid}]


def test_platform_specific_tables(engines: Engines) -> None:
    assert engines.query(_host(1, "darwin"), "SELECT count(*) AS n FROM apps").rows[0]["n"] != "0"
    assert engines.query(_host(1, "windows"), "SELECT 1 FROM programs LIMIT 1").ok
    assert engines.query(_host(1, "windows"), "SELECT * FROM mounts").error == (
        "no such table: mounts"
    )
    debian = engines.query(_host(1, "ubuntu"), "SELECT count(*) AS n FROM deb_packages")
    assert int(debian.rows[0]["n"]) > 100
    rpm = engines.query(_host(1, "centos"), "SELECT count(*) AS n FROM rpm_packages")
    assert int(rpm.rows[0]["n"]) > 100


def test_registry_lists_exactly_the_tables_that_exist() -> None:
    for name, platform in PLATFORMS.items():
        db = ReleaseDatabase(platform, platform.variants[0])
        host = HostInventory(make_profile(1, 0, name, NOW), AgentFacts())
        listed = {
            r["name"]
            for r in db.query(
                host, "SELECT name FROM osquery_registry WHERE registry = 'table'"
            ).rows
        }
        assert listed == set(db.table_names)
        db.close()


def test_runaway_query_is_interrupted() -> None:
    platform = PLATFORMS["ubuntu"]
    db = ReleaseDatabase(platform, platform.variants[0], time_limit=0.05)
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    result = db.query(_host(1), endless)
    assert result.error == "interrupted"
    assert db.query(_host(1), "SELECT 1 AS one").rows == [{"one": "1"}]
    db.close()


def test_fleet_detail_queries_work_on_every_platform(engines: Engines) -> None:
    network = (
        "SELECT ia.interface, ia.address, id.mac FROM interface_addresses ia "
        "JOIN interface_details id ON id.interface = ia.interface "
        "WHERE ia.address NOT LIKE '127.%' AND ia.address != '::1' "
        "AND ia.address NOT LIKE 'fe80:%' ORDER BY (ia.address LIKE '%:%'), ia.interface LIMIT 1"
    )
    for name in PLATFORMS:
        host = _host(2, name)
        rows = engines.query(host, network).rows
        assert rows and rows[0]["address"] == host.profile.ipv4 and rows[0]["mac"]
        for table in ("os_version", "osquery_info", "system_info", "uptime"):
            assert engines.query(host, f"SELECT * FROM {table} LIMIT 1").rows
