"""Who a simulated host is: its fixed identity, derived from (fleet seed, index)."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass

from fleetwatch.sim import catalog
from fleetwatch.sim.platforms import PLATFORMS, Platform, Variant
from fleetwatch.sim.seeding import mix, pick, seeded_uuid

OSQUERY_VERSION = "5.23.1"


@dataclass(frozen=True, slots=True)
class HostProfile:
    """The fixed identity of a host, all derived from (fleet seed, index)."""

    index: int
    seed: str
    platform: Platform
    variant: Variant
    hostname: str
    computer_name: str
    uuid: str
    serial: str
    hardware_vendor: str
    hardware_model: str
    cpu_brand: str
    physical_cores: int
    logical_cores: int
    memory: int
    disk_bytes: int
    boot_time: int
    start_time: int
    osquery_pid: int
    instance_id: str
    ipv4: str
    mac: str
    humans: tuple[str, ...]

    @property
    def family(self) -> str:
        return self.platform.family


def make_profile(fleet_seed: int, index: int, platform_name: str, now: float) -> HostProfile:
    """The profile of host number `index` of a fleet seeded with `fleet_seed`."""
    platform = PLATFORMS[platform_name]
    seed = f"{fleet_seed}:{index}"
    variant = platform.variants[mix(seed, "variant") % len(platform.variants)]
    family = platform.family
    vendor, model, brand = catalog.HARDWARE[family][mix(seed, "hw") % len(catalog.HARDWARE[family])]
    first = pick(catalog.FIRST_NAMES, seed, "owner")
    tag = f"{mix(seed, 'tag') % 46656:03x}"
    if family == "darwin":
        computer_name = f"{first.capitalize()}'s MacBook Pro ({index})"
        hostname = f"{first}-mbp-{index}-{tag}.local"
    elif family == "windows":
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        code = "".join(letters[(mix(seed, "win", i) % len(letters))] for i in range(6))
        hostname = computer_name = f"DESKTOP-{code}{index}"
    else:
        role = pick(("web", "db", "app", "cache", "build", "worker", "edge"), seed, "role")
        hostname = computer_name = f"{role}-{platform_name}-{index:05d}-{tag}"
    host_uuid = seeded_uuid(seed, "uuid")
    if family != "linux":
        host_uuid = host_uuid.upper()
    cores = (2, 4, 8, 10, 12, 16)[mix(seed, "cores") % 6]
    start = int(now)
    boot = start - 3600 - mix(seed, "boot") % (30 * 86400)
    n_humans = 1 + mix(seed, "humans") % 3
    humans = tuple(
        dict.fromkeys([first] + [pick(catalog.FIRST_NAMES, seed, "human", i) for i in range(4)])
    )[:n_humans]
    octets = mix(seed, "ip")
    mac_bits = mix(seed, "mac")
    mac = ":".join(f"{(mac_bits >> (8 * i)) & 0xFF:02x}" for i in range(6))
    mac = "02" + mac[2:]  # locally administered, unicast
    return HostProfile(
        index=index,
        seed=seed,
        platform=platform,
        variant=variant,
        hostname=hostname,
        computer_name=computer_name,
        uuid=host_uuid,
        serial=f"{'C02' if family == 'darwin' else 'SN'}{mix(seed, 'serial') % 10**9:09d}",
        hardware_vendor=vendor,
        hardware_model=model,
        cpu_brand=brand,
        physical_cores=cores,
        logical_cores=cores if family == "darwin" else cores * 2,
        memory=(8, 16, 32, 64)[mix(seed, "mem") % 4] * 1024**3,
        disk_bytes=(256, 512, 1024)[mix(seed, "disk") % 3] * 1000**3,
        boot_time=boot,
        start_time=start,
        osquery_pid=800 + mix(seed, "pid") % 30000,
        instance_id=seeded_uuid(seed, "instance"),
        ipv4=f"10.{(octets >> 16) % 256}.{(octets >> 8) % 256}.{2 + octets % 250}",
        mac=mac,
        humans=humans,
    )


def calendar_time(unix: float) -> str:
    """osquery's calendarTime: `Mon Oct  6 12:00:00 2025 UTC`."""
    t = _time.gmtime(unix)
    return _time.strftime(f"%a %b {t.tm_mday:2d} %H:%M:%S %Y UTC", t)
