"""Host inventory and details: the columns kept in the hosts table, read from enroll
`host_details` and merged from detail-query answers, and the host as the API shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func

from fleetwatch.fleet.host_state import HostState, iso
from fleetwatch.storage.schema import JsonDoc, hosts

#: Inventory columns kept in the hosts table (besides the free-form `inventory` JSON).
INVENTORY_COLUMNS = (
    "hostname",
    "computer_name",
    "uuid",
    "platform",
    "platform_like",
    "os_name",
    "os_version",
    "osquery_version",
    "cpu_type",
    "cpu_brand",
    "cpu_logical_cores",
    "physical_memory",
    "hardware_vendor",
    "hardware_model",
    "hardware_serial",
)
_INT_COLUMNS = {"cpu_logical_cores", "physical_memory"}


@dataclass
class InventoryUpdate:
    host: HostState
    fields: dict[str, Any]
    at: float


COLUMN_DEFAULTS: dict[str, Any] = {k: 0 if k in _INT_COLUMNS else "" for k in INVENTORY_COLUMNS}


def merged_inventory(dialect: str, fields: Mapping[str, Any]) -> Any:
    """The hosts.inventory JSON with `fields` merged over it (top level), in SQL."""
    value = bindparam(None, dict(fields), type_=JsonDoc)
    if dialect == "postgresql":
        return hosts.c.inventory.op("||", return_type=JsonDoc)(value)
    return func.json_patch(hosts.c.inventory, value, type_=JsonDoc)


def int_value(value: Any) -> int:
    try:
        return int(str(value).strip() or 0)
    except ValueError:
        return 0


def column_value(key: str, value: Any) -> Any:
    if key in _INT_COLUMNS:
        return int_value(value)
    return str(value if value is not None else "")[:255]


#: platform_type bitmask (osquery): POSIX=1, WINDOWS=2, BSD=4, LINUX=8, OSX=16, FREEBSD=32.
def platform_from_mask(platform_type: str) -> str:
    mask = int_value(platform_type)
    if mask & 0x10:
        return "darwin"
    if mask & 0x02:
        return "windows"
    if mask & 0x20:
        return "freebsd"
    if mask & 0x08:
        return "linux"
    return ""


def inventory_from_details(details: Mapping[str, Any], platform_type: str) -> dict[str, Any]:
    """Inventory fields from enroll `host_details` (every value a string, as osquery sends)."""

    def sub(name: str) -> Mapping[str, Any]:
        value = details.get(name)
        return value if isinstance(value, Mapping) else {}

    system = sub("system_info")
    os_version = sub("os_version")
    osquery = sub("osquery_info")
    platform = str(os_version.get("platform") or "") or platform_from_mask(platform_type)
    inventory: dict[str, Any] = {
        "hostname": str(system.get("hostname") or ""),
        "computer_name": str(system.get("computer_name") or ""),
        "uuid": str(system.get("uuid") or ""),
        "platform": platform,
        "platform_like": str(os_version.get("platform_like") or ""),
        "os_name": str(os_version.get("name") or ""),
        "os_version": os_version_string(os_version),
        "osquery_version": str(osquery.get("version") or ""),
        "cpu_type": str(system.get("cpu_type") or ""),
        "cpu_brand": str(system.get("cpu_brand") or ""),
        "cpu_logical_cores": int_value(system.get("cpu_logical_cores")),
        "physical_memory": int_value(system.get("physical_memory")),
        "hardware_vendor": str(system.get("hardware_vendor") or ""),
        "hardware_model": str(system.get("hardware_model") or ""),
        "hardware_serial": str(system.get("hardware_serial") or ""),
    }
    for key, value in inventory.items():
        if isinstance(value, str):
            inventory[key] = value[:255]
    return inventory


def os_version_string(os_version: Mapping[str, Any]) -> str:
    """'Ubuntu 22.04.4 LTS'-style name and version, as Fleet shows it."""
    name = str(os_version.get("name") or "")
    version = str(os_version.get("version") or "")
    if not version:
        parts = [str(os_version.get(k) or "") for k in ("major", "minor", "patch")]
        version = ".".join(p for p in parts if p)
    return f"{name} {version}".strip()


def host_document(row: Any, state: HostState | None, status: str) -> dict[str, Any]:
    """A hosts row as the API and the host's document show it (`state`: the host in memory,
    whose seen_time and labels are the latest; `status`: its status now)."""
    seen = state.seen_time if state is not None else row["seen_time"]
    inventory = dict(row["inventory"] or {})
    out: dict[str, Any] = {
        "id": int(row["id"]),
        "hostname": row["hostname"],
        "display_name": row["computer_name"] or row["hostname"],
        "uuid": row["uuid"],
        "platform": row["platform"],
        "status": status,
        "team_id": row["team_id"],
        "labels": list(state.labels) if state is not None else [],
        "seen_time": iso(seen),
        "enrolled_at": iso(row["enrolled_at"]),
        "detail_updated_at": iso(row["detail_updated_at"]),
        "host_identifier": row["host_identifier"],
    }
    for key in INVENTORY_COLUMNS:
        out.setdefault(key, row[key])
    out["memory"] = row["physical_memory"]
    for key in ("primary_ip", "primary_mac", "uptime", "kernel_version", "build"):
        if key in inventory:
            out[key] = inventory[key]
    out["inventory"] = inventory
    return out
