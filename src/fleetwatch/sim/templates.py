"""Rows of the tables every host of one OS release shares: os_version, kernel_info, groups,
installed software and osquery_registry. Built once per release and kept in its database."""

from __future__ import annotations

import re

from fleetwatch.sim import catalog, software
from fleetwatch.sim.platforms import Platform, Variant
from fleetwatch.sim.profile import OSQUERY_VERSION
from fleetwatch.sim.schemas import SCHEMAS, Row, tables_for
from fleetwatch.sim.seeding import mix


def template_rows(platform: Platform, variant: Variant, table: str) -> list[Row]:
    """The shared rows of `table` for hosts running `variant` of `platform`."""
    family = platform.family
    if table == "os_version":
        return [_os_version(platform, variant)]
    if table == "kernel_info":
        return [_kernel_info(family, variant)]
    if table == "groups":
        return _groups(family)
    if table == "deb_packages":
        return (
            _deb_packages(platform, variant)
            if platform.platform_like == "debian" or (platform.name == "debian")
            else []
        )
    if table == "rpm_packages":
        return _rpm_packages(variant) if platform.name in ("centos", "rhel") else []
    if table == "apps":
        return _apps(variant)
    if table == "programs":
        return _programs(variant)
    if table == "osquery_registry":
        return _registry(family)
    raise KeyError(f"{table} is not a shared table")


def _os_version(platform: Platform, v: Variant) -> Row:
    install_date = 1704067200 + mix(v.key, "install") % 10**7 if platform.family == "windows" else 0
    revision = int(v.kernel.rsplit(".", 1)[-1]) if platform.family == "windows" else 0
    patch = int(v.patch) if v.patch.isdigit() else 0
    return (
        v.name,
        v.version,
        v.major,
        v.minor,
        patch,
        v.build,
        platform.name,
        platform.platform_like,
        v.codename,
        v.arch,
        "",
        install_date,
        revision,
    )


def _kernel_info(family: str, v: Variant) -> Row:
    if family == "darwin":
        return (v.kernel, "", "/System/Library/Kernels/kernel", "")
    if family == "windows":
        return (v.kernel, "", "C:\\Windows\\system32\\ntoskrnl.exe", "")
    return (
        v.kernel,
        "ro console=tty1 console=ttyS0 nvme_core.io_timeout=4294967295",
        f"/boot/vmlinuz-{v.kernel}",
        "/dev/nvme0n1p1",
    )


def _groups(family: str) -> list[Row]:
    rows: list[Row] = []
    for name, gid in catalog.GROUPS[family]:
        if family == "windows":
            rows.append((gid, gid, name, f"S-1-5-32-{gid}", f"Members of {name}", 0))
        else:
            hidden = 1 if name.startswith("_") else 0
            signed = gid if gid < 2**31 else gid - 2**32
            rows.append((gid, signed, name, "", "", hidden))
    return rows


_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _bump(version: str, by: int) -> str:
    """The version with its last number raised by `by` (releases differ in patch levels)."""
    if by == 0:
        return version
    return _LAST_NUMBER.sub(lambda m: str(int(m.group(1)) + by), version, count=1)


def _variant_number(v: Variant) -> int:
    return mix(v.key, "bump") % 3


def _deb_packages(platform: Platform, v: Variant) -> list[Row]:
    bump = _variant_number(v)
    rows: list[Row] = []
    maintainer = (
        "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>"
        if platform.name == "ubuntu"
        else "Debian Developers <debian-devel@lists.debian.org>"
    )
    for name, version, section in software.DEB_PACKAGES:
        if platform.name == "debian":
            version = version.replace("ubuntu", "deb").replace("~22.04", "")
        size = 20 + mix(name, "size") % 5000
        arch = "all" if section in ("misc", "localization") else "amd64"
        rows.append(
            (
                name,
                _bump(version, bump),
                name.split("-")[0],
                size,
                arch,
                "",
                "install ok installed",
                maintainer,
                section,
                "optional",
                "/var/lib/dpkg",
            )
        )
    for i, stem in enumerate(software.LIB_STEMS):
        version = f"{1 + mix(stem, 'maj') % 4}.{mix(stem, 'min') % 20}.{mix(stem, 'pat') % 9}"
        name = f"lib{stem}{mix(stem, 'so') % 4}"
        rows.append(
            (
                name,
                f"{_bump(version, bump)}-{1 + i % 3}",
                stem,
                40 + mix(stem, "sz") % 900,
                "amd64",
                "",
                "install ok installed",
                maintainer,
                "libs",
                "optional",
                "/var/lib/dpkg",
            )
        )
    return rows


def _rpm_packages(v: Variant) -> list[Row]:
    el = f"el{v.major}" if v.major in (7, 8, 9) else "el9"
    bump = _variant_number(v)
    vendor = "Red Hat, Inc." if v.name.startswith("Red Hat") else "CentOS"
    rows: list[Row] = []
    installed = 1700000000 + mix(v.key, "installed") % 10**7
    for name, version, release in software.RPM_PACKAGES:
        rows.append(
            (
                name,
                _bump(version, bump),
                release.replace("el9", el),
                "",
                30000 + mix(name, "size") % 5000000,
                f"{mix(name, 'sha1'):016x}",
                "x86_64",
                0,
                installed,
                vendor,
                "Unspecified",
            )
        )
    for i, stem in enumerate(software.LIB_STEMS):
        version = f"{1 + mix(stem, 'maj') % 4}.{mix(stem, 'min') % 20}.{mix(stem, 'pat') % 9}"
        rows.append(
            (
                f"lib{stem}",
                _bump(version, bump),
                f"{1 + i % 5}.{el}",
                "",
                40000 + mix(stem, "sz") % 900000,
                f"{mix(stem, 'sha1'):016x}",
                "x86_64",
                0,
                installed,
                vendor,
                "System Environment/Libraries",
            )
        )
    return rows


def _apps(v: Variant) -> list[Row]:
    bump = _variant_number(v)
    rows: list[Row] = []
    for name, bundle_id, version, category in software.MAC_APPS:
        system = bundle_id.startswith("com.apple.") and name not in (
            "Xcode",
            "Keynote",
            "Numbers",
            "Pages",
        )
        base = "/System/Applications" if system else "/Applications"
        rows.append(
            (
                f"{name}.app",
                f"{base}/{name}.app",
                name,
                bundle_id,
                name,
                _bump(version, bump),
                _bump(version, bump),
                "APPL",
                "",
                "",
                "com.apple.compilers.llvm.clang.1_0",
                "en",
                name,
                "",
                "12.0",
                category,
                "",
                f"Copyright © 2024 {name}",
                1717000000.0,
            )
        )
    return rows


def _programs(v: Variant) -> list[Row]:
    bump = _variant_number(v)
    rows: list[Row] = []
    for name, version, publisher in software.WINDOWS_PROGRAMS:
        guid = f"{{{mix(name, 'guid'):016X}-0000-0000-0000-{mix(name, 'g2') % 10**12:012d}}}"
        rows.append(
            (
                name,
                _bump(version, bump),
                f"C:\\Program Files\\{name.split(' ')[0]}",
                "",
                "1033",
                publisher,
                f"MsiExec.exe /X{guid}",
                "20240514",
                guid,
                "",
                "",
            )
        )
    return rows


def _registry(family: str) -> list[Row]:
    rows: list[Row] = [("table", s.name, 0, 1, 1) for s in tables_for(family) if s.name in SCHEMAS]
    plugins = (
        ("config", "tls"),
        ("config", "filesystem"),
        ("logger", "tls"),
        ("logger", "filesystem"),
        ("distributed", "tls"),
        ("enroll", "tls"),
        ("sql", "sql"),
        ("killswitch", "killswitch_filesystem"),
        ("numeric_monitoring", "filesystem"),
    )
    rows += [(registry, name, 0, 1, 1) for registry, name in plugins]
    return rows


__all__ = ["OSQUERY_VERSION", "template_rows"]
