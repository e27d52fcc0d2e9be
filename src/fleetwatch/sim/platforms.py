"""The operating systems a simulated host can run, and `--platforms` weighting.

Each platform has a few variants (OS releases); a host gets one variant from its seed. The
values are what osquery reports on that OS (`os_version`, `kernel_info`, the platform mask).
"""

from __future__ import annotations

from dataclasses import dataclass

#: osquery's build platform bits (osquery/utils/info/platform_type.h).
POSIX, WINDOWS, BSD, LINUX, OSX = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass(frozen=True, slots=True)
class Variant:
    """One OS release: its `os_version` row and kernel."""

    key: str
    name: str
    version: str
    major: int
    minor: int
    patch: str
    build: str
    codename: str
    kernel: str
    arch: str = "x86_64"


@dataclass(frozen=True, slots=True)
class Platform:
    """An OS family as osquery names it in `os_version.platform`."""

    name: str
    family: str  # linux, darwin or windows: decides tables, processes, packages
    platform_like: str
    mask: int
    variants: tuple[Variant, ...]

    @property
    def platform_type(self) -> str:
        """The enroll `platform_type`: the platform mask as a decimal string."""
        return str(self.mask)

    @property
    def osquery_platforms(self) -> frozenset[str]:
        """Values of a scheduled query's `platform` field that select this host."""
        names = {"all", "any", self.family, self.name}
        if self.family != "windows":
            names.add("posix")
        return frozenset(names)


_LINUX_MASK = POSIX | LINUX
PLATFORMS: dict[str, Platform] = {
    "ubuntu": Platform(
        "ubuntu",
        "linux",
        "debian",
        _LINUX_MASK,
        (
            Variant(
                "ubuntu-20.04",
                "Ubuntu",
                "20.04.6 LTS (Focal Fossa)",
                20,
                4,
                "0",
                "",
                "focal",
                "5.15.0-107-generic",
            ),
            Variant(
                "ubuntu-22.04",
                "Ubuntu",
                "22.04.4 LTS (Jammy Jellyfish)",
                22,
                4,
                "0",
                "",
                "jammy",
                "5.15.0-113-generic",
            ),
            Variant(
                "ubuntu-24.04",
                "Ubuntu",
                "24.04 LTS (Noble Numbat)",
                24,
                4,
                "0",
                "",
                "noble",
                "6.8.0-36-generic",
            ),
        ),
    ),
    "debian": Platform(
        "debian",
        "linux",
        "",
        _LINUX_MASK,
        (
            Variant(
                "debian-11",
                "Debian GNU/Linux",
                "11 (bullseye)",
                11,
                0,
                "0",
                "",
                "bullseye",
                "5.10.0-30-amd64",
            ),
            Variant(
                "debian-12",
                "Debian GNU/Linux",
                "12 (bookworm)",
                12,
                0,
                "0",
                "",
                "bookworm",
                "6.1.0-21-amd64",
            ),
        ),
    ),
    "centos": Platform(
        "centos",
        "linux",
        "rhel fedora",
        _LINUX_MASK,
        (
            Variant(
                "centos-7",
                "CentOS Linux",
                "CentOS Linux release 7.9.2009 (Core)",
                7,
                9,
                "2009",
                "",
                "",
                "3.10.0-1160.119.1.el7.x86_64",
            ),
            Variant(
                "centos-stream-9",
                "CentOS Stream",
                "CentOS Stream release 9",
                9,
                0,
                "0",
                "",
                "",
                "5.14.0-452.el9.x86_64",
            ),
        ),
    ),
    "rhel": Platform(
        "rhel",
        "linux",
        "fedora",
        _LINUX_MASK,
        (
            Variant(
                "rhel-8",
                "Red Hat Enterprise Linux",
                "Red Hat Enterprise Linux release 8.10 (Ootpa)",
                8,
                10,
                "0",
                "",
                "",
                "4.18.0-553.el8_10.x86_64",
            ),
            Variant(
                "rhel-9",
                "Red Hat Enterprise Linux",
                "Red Hat Enterprise Linux release 9.4 (Plow)",
                9,
                4,
                "0",
                "",
                "",
                "5.14.0-427.13.1.el9_4.x86_64",
            ),
        ),
    ),
    "darwin": Platform(
        "darwin",
        "darwin",
        "darwin",
        POSIX | BSD | OSX,
        (
            Variant("macos-13", "macOS", "13.6.7", 13, 6, "7", "22G720", "", "22.6.0", "x86_64"),
            Variant("macos-14", "macOS", "14.5", 14, 5, "0", "23F79", "", "23.5.0", "arm64"),
            Variant("macos-15", "macOS", "15.1", 15, 1, "0", "24B83", "", "24.1.0", "arm64"),
        ),
    ),
    "windows": Platform(
        "windows",
        "windows",
        "windows",
        WINDOWS,
        (
            Variant(
                "windows-10",
                "Microsoft Windows 10 Pro",
                "10.0.19045",
                10,
                0,
                "",
                "19045",
                "Microsoft Windows 10 Pro",
                "10.0.19041.4522",
                "64-bit",
            ),
            Variant(
                "windows-11",
                "Microsoft Windows 11 Enterprise",
                "10.0.22631",
                10,
                0,
                "",
                "22631",
                "Microsoft Windows 11 Enterprise",
                "10.0.22621.3737",
                "64-bit",
            ),
            Variant(
                "windows-server-2022",
                "Microsoft Windows Server 2022 Datacenter",
                "10.0.20348",
                10,
                0,
                "",
                "20348",
                "Microsoft Windows Server 2022 Datacenter",
                "10.0.20348.2527",
                "64-bit",
            ),
        ),
    ),
}

#: The mix used when `--platforms` is not given: mostly Linux servers, some laptops.
DEFAULT_WEIGHTS: dict[str, int] = {"ubuntu": 4, "darwin": 3, "windows": 2, "centos": 1}


class PlatformSpecError(ValueError):
    """A `--platforms` value that cannot be understood; the message says why."""


def parse_platforms(spec: str | None) -> dict[str, int]:
    """Parse `darwin=3,windows=2,ubuntu` into weights (a bare name weighs 1).

    Raises PlatformSpecError naming the bad part and the known platforms.
    """
    if spec is None or not spec.strip():
        return dict(DEFAULT_WEIGHTS)
    weights: dict[str, int] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, weight_text = part.partition("=")
        name = name.strip().lower()
        if name not in PLATFORMS:
            known = ", ".join(sorted(PLATFORMS))
            raise PlatformSpecError(f"unknown platform {name!r} in --platforms; known: {known}")
        if not weight_text:
            weight = 1
        else:
            try:
                weight = int(weight_text)
            except ValueError:
                raise PlatformSpecError(
                    f"weight of {name!r} must be a whole number, not {weight_text!r}"
                ) from None
            if weight < 0:
                raise PlatformSpecError(f"weight of {name!r} must not be negative")
        weights[name] = weights.get(name, 0) + weight
    if not weights or sum(weights.values()) == 0:
        raise PlatformSpecError("--platforms needs at least one platform with a weight above 0")
    return weights


def assign_platforms(weights: dict[str, int], count: int) -> list[str]:
    """Spread `count` hosts over the platforms in proportion to the weights.

    Largest-remainder apportionment, interleaved so any prefix of the fleet is mixed too.
    """
    positive = {name: w for name, w in weights.items() if w > 0}
    total = sum(positive.values())
    if count <= 0 or total == 0:
        return []
    exact = {name: count * w / total for name, w in positive.items()}
    shares = {name: int(v) for name, v in exact.items()}
    remainder = count - sum(shares.values())
    for name in sorted(exact, key=lambda n: (shares[n] - exact[n], n))[:remainder]:
        shares[name] += 1
    # Interleave: at step i, take the platform furthest behind its share.
    order: list[str] = []
    taken = dict.fromkeys(shares, 0)
    for i in range(count):
        name = max(
            (n for n in shares if taken[n] < shares[n]),
            key=lambda n: (shares[n] * (i + 1) / count - taken[n], n),
        )
        taken[name] += 1
        order.append(name)
    return order
