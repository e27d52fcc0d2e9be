"""The network and storage tables of a simulated host (interface_addresses,
interface_details, mounts, logical_drives), built from its profile and seed."""

from __future__ import annotations

from fleetwatch.sim.profile import HostProfile
from fleetwatch.sim.schemas import Row
from fleetwatch.sim.seeding import mix


class DeviceTables:
    """The part of `HostInventory` that builds its network and storage rows."""

    profile: HostProfile

    # network -------------------------------------------------------------------------------

    def _interfaces(self) -> list[tuple[str, str, str]]:
        """(interface, friendly name, mac) in osquery's naming for the family."""
        p = self.profile
        if p.family == "windows":
            return [("1", "Loopback Pseudo-Interface 1", ""), ("13", "Ethernet", p.mac)]
        if p.family == "darwin":
            return [("lo0", "", "00:00:00:00:00:00"), ("en0", "", p.mac)]
        primary = "ens5" if p.hardware_vendor == "Amazon EC2" else "eth0"
        return [("lo", "", "00:00:00:00:00:00"), (primary, "", p.mac)]

    def _interface_addresses(self, now: float) -> list[Row]:
        p = self.profile
        (lo, lo_name, _), (eth, eth_name, mac) = self._interfaces()
        link_local = "fe80::" + ":".join(
            mac.split(":")[i] + mac.split(":")[i + 1] for i in (0, 2, 4)
        )
        broadcast = ".".join(p.ipv4.split(".")[:3]) + ".255"
        kind = "dhcp" if p.family == "windows" else "unknown"
        return [
            (lo, "127.0.0.1", "255.0.0.0", "", "", "manual" if kind == "dhcp" else kind, lo_name),
            (lo, "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", "", "unknown", lo_name),
            (eth, p.ipv4, "255.255.255.0", broadcast, "", kind, eth_name),
            (eth, link_local, "ffff:ffff:ffff:ffff::", "", "", "unknown", eth_name),
        ]

    def _interface_details(self, now: float) -> list[Row]:
        p = self.profile
        up = max(1, int(now) - p.boot_time)
        rows: list[Row] = []
        for i, (name, friendly, mac) in enumerate(self._interfaces()):
            loop = i == 0
            packets = up * (3 if loop else 40 + mix(p.seed, "pk") % 60)
            rows.append(
                (
                    name,
                    mac,
                    24 if loop else 6,
                    65536 if loop else 1500,
                    0,
                    73 if loop else 4163,
                    packets,
                    packets * 9 // 10,
                    packets * 600,
                    packets * 400,
                    0,
                    0,
                    0,
                    0,
                    0,
                    p.boot_time,
                    0 if loop else 10000000000,
                    "" if loop else "0000:00:05.0",
                    friendly,
                    "Software Loopback Interface 1" if loop and p.family == "windows" else "",
                    "",
                    friendly,
                    "",
                    1,
                    0 if loop else 1,
                    0 if loop else 10000000000,
                    0 if loop else 1,
                )
            )
        return rows

    # storage -------------------------------------------------------------------------------

    def _mounts(self, now: float) -> list[Row]:
        p = self.profile
        blocks = p.disk_bytes // 4096
        free = blocks * (20 + mix(p.seed, "free") % 60) // 100
        if p.family == "darwin":
            return [
                (
                    "/dev/disk3s1s1",
                    "/dev/disk3s1s1",
                    "/",
                    "apfs",
                    4096,
                    blocks,
                    free,
                    free,
                    blocks // 8,
                    blocks // 10,
                    "sealed, local, read-only, journaled",
                ),
                (
                    "/dev/disk3s5",
                    "/dev/disk3s5",
                    "/System/Volumes/Data",
                    "apfs",
                    4096,
                    blocks,
                    free,
                    free,
                    blocks // 8,
                    blocks // 10,
                    "local, journaled, nobrowse",
                ),
                ("devfs", "devfs", "/dev", "devfs", 512, 390, 0, 0, 675, 0, "local, nobrowse"),
            ]
        device = "/dev/nvme0n1p1" if p.hardware_vendor == "Amazon EC2" else "/dev/sda1"
        return [
            (
                device,
                device,
                "/",
                "ext4",
                4096,
                blocks,
                free,
                free - blocks // 20,
                blocks // 16,
                blocks // 20,
                "rw,relatime,discard,errors=remount-ro",
            ),
            (
                "/dev/sda15",
                "/dev/sda15",
                "/boot/efi",
                "vfat",
                512,
                213991,
                201000,
                201000,
                0,
                0,
                "rw,relatime,fmask=0077,dmask=0077",
            ),
            (
                "tmpfs",
                "tmpfs",
                "/run",
                "tmpfs",
                4096,
                p.memory // 40960,
                p.memory // 41000,
                p.memory // 41000,
                500000,
                499000,
                "rw,nosuid,nodev,noexec,relatime",
            ),
            (
                "proc",
                "proc",
                "/proc",
                "proc",
                4096,
                0,
                0,
                0,
                0,
                0,
                "rw,nosuid,nodev,noexec,relatime",
            ),
            (
                "sysfs",
                "sysfs",
                "/sys",
                "sysfs",
                4096,
                0,
                0,
                0,
                0,
                0,
                "rw,nosuid,nodev,noexec,relatime",
            ),
        ]

    def _logical_drives(self, now: float) -> list[Row]:
        p = self.profile
        free = p.disk_bytes * (20 + mix(p.seed, "free") % 60) // 100
        return [("C:", "Local Disk", "Local Fixed Disk", 1, p.disk_bytes, free, "NTFS")]
