"""Detail queries: the inventory refresh sent as `fleet_detail_query_<name>`.

They go to a host right after it enrolls and then every `detail_interval` (jittered), until
answered: a read that is not followed by a write re-offers them.
"""

from __future__ import annotations

from typing import Any

from fleetwatch.dispatch.distributed import DistributedResult
from fleetwatch.fleet.host_inventory import os_version_string
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.hosts import HostService

PREFIX = "fleet_detail_query_"

DETAIL_QUERIES: dict[str, str] = {
    "os_version": "SELECT * FROM os_version LIMIT 1",
    "osquery_info": "SELECT * FROM osquery_info LIMIT 1",
    "system_info": "SELECT * FROM system_info LIMIT 1",
    "uptime": "SELECT * FROM uptime LIMIT 1",
    "network_interface": (
        "SELECT ia.interface, ia.address, id.mac FROM interface_addresses ia "
        "JOIN interface_details id ON id.interface = ia.interface "
        "WHERE ia.address NOT LIKE '127.%' AND ia.address != '::1' "
        "AND ia.address NOT LIKE 'fe80:%' "
        "ORDER BY (ia.address LIKE '%:%'), ia.interface LIMIT 1"
    ),
    "osquery_flags": (
        "SELECT name, value FROM osquery_flags WHERE name IN "
        "('distributed_interval', 'config_tls_refresh', 'config_refresh', 'logger_tls_period')"
    ),
}
_QUERIES = {PREFIX + name: sql for name, sql in DETAIL_QUERIES.items()}


def inventory_from_results(results: list[DistributedResult]) -> dict[str, Any]:
    """Inventory fields from the answered detail queries (failed ones contribute nothing)."""
    fields: dict[str, Any] = {}
    for result in results:
        if result.failed or not result.rows:
            continue
        name = result.name[len(PREFIX) :]
        row = result.rows[0]
        if name == "os_version":
            fields["os_version"] = os_version_string(row)
            fields["os_name"] = row.get("name", "")
            if row.get("platform"):
                fields["platform"] = row["platform"]
            fields["platform_like"] = row.get("platform_like", "")
            fields["build"] = row.get("build", "")
        elif name == "osquery_info":
            fields["osquery_version"] = row.get("version", "")
        elif name == "system_info":
            for src, dst in (
                ("hostname", "hostname"),
                ("computer_name", "computer_name"),
                ("uuid", "uuid"),
                ("cpu_type", "cpu_type"),
                ("cpu_brand", "cpu_brand"),
                ("cpu_logical_cores", "cpu_logical_cores"),
                ("physical_memory", "physical_memory"),
                ("hardware_vendor", "hardware_vendor"),
                ("hardware_model", "hardware_model"),
                ("hardware_serial", "hardware_serial"),
            ):
                if src in row:
                    fields[dst] = row[src]
        elif name == "uptime":
            fields["uptime"] = row.get("total_seconds", "")
        elif name == "network_interface":
            fields["primary_ip"] = row.get("address", "")
            fields["primary_mac"] = row.get("mac", "")
        elif name == "osquery_flags":
            flags = {r.get("name", ""): r.get("value", "") for r in result.rows}
            interval = flags.get("distributed_interval", "")
            if interval.isdigit():
                fields["distributed_interval"] = int(interval)
    return fields


class DetailQuerySource:
    """Sends detail queries to hosts whose inventory is due and stores the answers."""

    prefix = PREFIX

    def __init__(self, hosts: HostService) -> None:
        self.hosts = hosts

    def queries_for(self, host: HostState, now: float) -> dict[str, str]:
        return dict(_QUERIES) if self.hosts.detail_due(host, now) else {}

    async def ingest(self, host: HostState, results: list[DistributedResult]) -> None:
        await self.hosts.apply_inventory(host, inventory_from_results(results))
