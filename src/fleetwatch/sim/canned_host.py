"""One fixed osquery host's identity tables, as osquery sends them (every value a string).

The enroll `host_details` and the detail query rows of a host that runs no SQL engine: the
agent of the protocol tests (tests/agent.py) and the lean benchmark hosts
(bench/_lean_wire.py). Only the identity (names, UUID, serial, pid) varies from host to
host; the release is the simulator's Ubuntu 22.04 and the machine a LENOVO laptop.
"""

from __future__ import annotations

from fleetwatch.sim.platforms import PLATFORMS
from fleetwatch.sim.profile import OSQUERY_VERSION

_UBUNTU = PLATFORMS["ubuntu"]
_JAMMY = next(v for v in _UBUNTU.variants if v.key == "ubuntu-22.04")

#: The `platform_type` of an enroll (the platform mask, decimal): POSIX | LINUX.
PLATFORM_TYPE = _UBUNTU.platform_type


def os_version() -> dict[str, str]:
    """The `os_version` row."""
    return {
        "name": _JAMMY.name,
        "version": _JAMMY.version,
        "major": str(_JAMMY.major),
        "minor": str(_JAMMY.minor),
        "patch": _JAMMY.patch,
        "build": _JAMMY.build,
        "platform": _UBUNTU.name,
        "platform_like": _UBUNTU.platform_like,
        "codename": _JAMMY.codename,
        "arch": _JAMMY.arch,
    }


def osquery_info(uuid: str, pid: str, instance_id: str) -> dict[str, str]:
    """The `osquery_info` row of an agent with no config yet."""
    return {
        "pid": pid,
        "uuid": uuid,
        "instance_id": instance_id,
        "version": OSQUERY_VERSION,
        "config_hash": "",
        "config_valid": "0",
        "extensions": "inactive",
        "build_platform": "ubuntu",
        "build_distro": "jammy",
        "start_time": "1760000000",
        "watcher": "-1",
        "platform_mask": PLATFORM_TYPE,
    }


def system_info(hostname: str, uuid: str, serial: str) -> dict[str, str]:
    """The `system_info` row."""
    return {
        "hostname": hostname,
        "uuid": uuid,
        "cpu_type": "x86_64",
        "cpu_brand": "Intel(R) Core(TM) i7-1185G7",
        "cpu_physical_cores": "4",
        "cpu_logical_cores": "8",
        "physical_memory": "17179869184",
        "hardware_vendor": "LENOVO",
        "hardware_model": "20XW",
        "hardware_serial": serial,
        "computer_name": hostname,
        "local_hostname": hostname,
    }


def platform_info() -> dict[str, str]:
    """The `platform_info` row (the firmware)."""
    return {"vendor": "LENOVO", "version": "N2HET77W", "date": "01/02/2024"}


def host_details(
    hostname: str, uuid: str, serial: str, pid: str, instance_id: str
) -> dict[str, dict[str, str]]:
    """The enroll `host_details`: table name to its one row, as osquery 5 sends them."""
    return {
        "os_version": os_version(),
        "osquery_info": osquery_info(uuid, pid, instance_id),
        "system_info": system_info(hostname, uuid, serial),
        "platform_info": platform_info(),
    }
