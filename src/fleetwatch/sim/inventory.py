"""What one simulated host looks like: its identity and the rows of its per-host tables.

A host keeps only a small `HostProfile`; rows are rebuilt from the profile, the seed and the
current time whenever a query needs them. Processes churn by "generation": every
`churn_period` seconds some process slots end and others start, deterministically, so a
scheduled query's differential results show real added/removed rows without the simulator
storing any process list.
"""

from __future__ import annotations

import itertools
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleetwatch.sim import catalog, process_catalog
from fleetwatch.sim.inventory_devices import DeviceTables
from fleetwatch.sim.process_catalog import ProcessSpec
from fleetwatch.sim.profile import OSQUERY_VERSION, HostProfile, calendar_time
from fleetwatch.sim.schemas import Row
from fleetwatch.sim.seeding import mix, seeded_uuid

_tokens = itertools.count(1)


@dataclass(slots=True)
class AgentFacts:
    """The agent state some tables show (osquery_info, osquery_flags); `version` bumps on
    every change so cached rows are rebuilt."""

    config_hash: str = ""
    config_valid: bool = False
    flags: dict[str, str] = field(default_factory=dict)
    version: int = 0

    def update(self, *, config_hash: str, flags: Mapping[str, str]) -> None:
        self.config_hash = config_hash
        self.config_valid = True
        self.flags = dict(flags)
        self.version += 1


@dataclass(slots=True)
class _Proc:
    pid: int
    spec: ProcessSpec
    start: int
    parent: int


class HostInventory(DeviceTables):
    """Rows of a host's per-host tables at a given time (see the module docstring)."""

    def __init__(
        self, profile: HostProfile, facts: AgentFacts, churn_period: float | None = 30.0
    ) -> None:
        self.profile = profile
        self.facts = facts
        self.churn_period = churn_period if churn_period and churn_period > 0 else None
        #: Identifies this inventory in the engine's row cache (ids of dead objects recur).
        self.token = next(_tokens)

    # -- caching --------------------------------------------------------------------------

    def generation(self, now: float) -> int:
        """How many process-churn steps have happened since the agent started."""
        if self.churn_period is None:
            return 0
        return max(0, int((now - self.profile.start_time) // self.churn_period))

    def cache_key(self, table: str, now: float) -> tuple[object, ...]:
        """Rows of `table` are unchanged while this key is unchanged."""
        idx = self.token
        if table in ("uptime", "time"):
            return (idx, int(now))
        if table in ("processes", "listening_ports"):
            return (idx, self.generation(now), int(now) // 10)
        if table in ("osquery_info", "osquery_flags"):
            return (idx, self.facts.version)
        return (idx,)

    # -- rows -----------------------------------------------------------------------------

    def rows(self, table: str, now: float) -> list[Row]:
        """The rows of a per-host table, in schema column order."""
        builder = getattr(self, f"_{table}")
        rows: list[Row] = builder(now)
        return rows

    def _system_info(self, now: float) -> list[Row]:
        p = self.profile
        arm = p.variant.arch == "arm64"
        cpu_type = "arm64e" if arm else "x86_64"
        subtype = "ARM64E" if arm else ("158" if p.family == "darwin" else "-1")
        local = p.hostname.split(".")[0]
        board_vendor = p.hardware_vendor if p.family != "darwin" else "Apple Inc."
        return [
            (
                p.hostname,
                p.uuid,
                cpu_type,
                subtype,
                p.cpu_brand,
                p.physical_cores,
                p.logical_cores,
                1,
                "0xf0" if not arm else "",
                p.memory,
                p.hardware_vendor,
                p.hardware_model,
                "1.0",
                p.serial,
                board_vendor,
                p.hardware_model,
                "",
                p.serial,
                p.computer_name,
                local,
            )
        ]

    def _osquery_info(self, now: float) -> list[Row]:
        p = self.profile
        build = {
            "linux": ("linux", "centos7"),
            "darwin": ("darwin", "10.14"),
            "windows": ("windows", "10"),
        }[p.family]
        return [
            (
                p.osquery_pid,
                p.uuid,
                p.instance_id,
                OSQUERY_VERSION,
                self.facts.config_hash,
                int(self.facts.config_valid),
                "inactive",
                build[0],
                build[1],
                p.start_time,
                p.osquery_pid - 1 if p.family != "windows" else -1,
                p.platform.mask,
            )
        ]

    def _platform_info(self, now: float) -> list[Row]:
        p = self.profile
        if p.family == "darwin":
            return [("Apple Inc.", "10151.121.1", "05/02/2024", "", "", "efi", "", "", "")]
        vendor = "Amazon EC2" if p.hardware_vendor == "Amazon EC2" else p.hardware_vendor
        return [
            (
                vendor,
                f"1.{mix(p.seed, 'bios') % 30}.0",
                "04/11/2024",
                "1.0",
                "",
                "uefi",
                "0xe8000",
                "65536",
                "0",
            )
        ]

    def _uptime(self, now: float) -> list[Row]:
        total = max(0, int(now) - self.profile.boot_time)
        days, rest = divmod(total, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        return [(days, hours, minutes, seconds, total)]

    def _time(self, now: float) -> list[Row]:
        t = _time.gmtime(now)
        unix = int(now)
        return [
            (
                _time.strftime("%A", t),
                t.tm_year,
                t.tm_mon,
                t.tm_mday,
                t.tm_hour,
                t.tm_min,
                t.tm_sec,
                "UTC",
                "UTC",
                unix,
                calendar_time(now)[:-4],
                _time.strftime("%Y-%m-%dT%H:%M:%SZ", t),
                _time.strftime("%Y-%m-%dT%H:%M:%SZ", t),
            )
        ]

    # processes ---------------------------------------------------------------------------

    def processes_at(self, now: float) -> list[_Proc]:
        """The running processes: the platform's daemons plus churning transient slots."""
        p = self.profile
        gen = self.generation(now)
        daemons = process_catalog.DAEMONS[p.family]
        transient = process_catalog.TRANSIENT[p.family]
        step = 4 if p.family == "windows" else 1
        procs: list[_Proc] = []
        pid = 0
        for i, spec in enumerate(daemons):
            pid += step * (1 + (0 if i < 2 else mix(p.seed, "dpid", i) % 40))
            if spec.name.startswith("osqueryd"):
                procs.append(_Proc(p.osquery_pid, spec, p.start_time, 1))
                continue
            procs.append(_Proc(pid, spec, p.boot_time + i, 0 if i == 0 else 1))
        parent = procs[-1].pid
        slots = 12 + mix(p.seed, "slots") % 12
        period = self.churn_period or 0.0
        for k in range(slots):
            stride = 1 + mix(p.seed, "stride", k) % 6
            phase = mix(p.seed, "phase", k) % stride
            version = (gen + phase) // stride
            if mix(p.seed, "run", k, version) % 4 == 0:
                continue  # slot idle in this version
            spec = transient[mix(p.seed, "spec", k, version) % len(transient)]
            slot_pid = (3000 + (mix(p.seed, "tpid", k, version) % 2000) * 32 + k) * step
            began = p.start_time + int((version * stride - phase) * period)
            procs.append(_Proc(slot_pid, spec, max(p.boot_time + 120 + k, began), parent))
        return procs

    def _processes(self, now: float) -> list[Row]:
        p = self.profile
        gen = self.generation(now)
        rows: list[Row] = []
        windows = p.family == "windows"
        for proc in self.processes_at(now):
            s = proc.spec
            uid = -1 if windows else s.uid
            gid = -1 if windows else (s.uid if s.uid < 1000 else 1000)
            age = max(1, int(now) - proc.start)
            wobble = 1 + (mix(p.seed, "mem", proc.pid, gen) % 20) / 100
            resident = int(s.memory_kib * 1024 * wobble)
            cpu = age * (1 + mix(p.seed, "cpu", proc.pid) % 7) // 100
            rows.append(
                (
                    proc.pid,
                    s.name,
                    s.path,
                    f"{s.path} {s.args}".strip() if s.path else "",
                    "S",
                    "/" if not windows else "",
                    "/" if not windows else "",
                    uid,
                    gid,
                    uid,
                    gid,
                    uid,
                    gid,
                    1 if s.path else -1,
                    0,
                    resident,
                    resident * 3,
                    cpu * 10,
                    cpu * 3,
                    cpu * 4096,
                    cpu * 1024,
                    proc.start,
                    proc.parent,
                    proc.pid,
                    s.threads,
                    0,
                )
            )
        return rows

    def _listening_ports(self, now: float) -> list[Row]:
        rows: list[Row] = []
        fd = 3
        for proc in self.processes_at(now):
            for port in proc.spec.ports:
                udp = port in (53, 323, 5353)
                address = "127.0.0.53" if port == 53 else "0.0.0.0"
                sock = 20000 + mix(self.profile.seed, "sock", proc.pid, port) % 900000
                rows.append((proc.pid, port, 17 if udp else 6, 2, address, fd, sock, "", "0"))
                fd += 1
        return rows

    # people --------------------------------------------------------------------------------

    def _users(self, now: float) -> list[Row]:
        p = self.profile
        rows: list[Row] = []
        sid_base = f"S-1-5-21-{mix(p.seed, 'sid') % 10**10}-{mix(p.seed, 'sid2') % 10**9}"
        for name, uid, gid, desc, home, shell in catalog.SYSTEM_USERS[p.family]:
            if p.family == "windows":
                sid = f"S-1-5-{uid}" if uid < 100 else f"{sid_base}-{uid}"
                rows.append((uid, gid, uid, gid, name, desc, home, shell, sid, "local", 0))
            else:
                hidden = 1 if p.family == "darwin" and name.startswith("_") else 0
                signed = uid if uid < 2**31 else uid - 2**32
                rows.append(
                    (
                        uid,
                        gid,
                        signed,
                        gid if gid < 2**31 else gid - 2**32,
                        name,
                        desc,
                        home,
                        shell,
                        seeded_uuid(p.seed, name).upper() if p.family == "darwin" else "",
                        "",
                        hidden,
                    )
                )
        for i, name in enumerate(p.humans):
            full = name.capitalize()
            if p.family == "darwin":
                uid = 501 + i
                rows.append(
                    (
                        uid,
                        20,
                        uid,
                        20,
                        name,
                        full,
                        f"/Users/{name}",
                        "/bin/zsh",
                        seeded_uuid(p.seed, "user", name).upper(),
                        "",
                        0,
                    )
                )
            elif p.family == "windows":
                uid = 1001 + i
                rows.append(
                    (
                        uid,
                        513,
                        uid,
                        513,
                        name,
                        full,
                        f"C:\\Users\\{name}",
                        "C:\\Windows\\system32\\cmd.exe",
                        f"{sid_base}-{uid}",
                        "local",
                        0,
                    )
                )
            else:
                uid = 1000 + i
                rows.append(
                    (
                        uid,
                        uid,
                        uid,
                        uid,
                        name,
                        f"{full},,,",
                        f"/home/{name}",
                        "/bin/bash",
                        "",
                        "",
                        0,
                    )
                )
        return rows

    def _logged_in_users(self, now: float) -> list[Row]:
        p = self.profile
        user = p.humans[0]
        login = p.boot_time + 300
        if p.family == "windows":
            sid = f"S-1-5-21-{mix(p.seed, 'sid') % 10**10}-{mix(p.seed, 'sid2') % 10**9}-1001"
            return [("active", user, "console", "", login, 0, sid, f"HKEY_USERS\\{sid}")]
        if p.family == "darwin":
            return [("user", user, "console", "", login, 0, "", "")]
        return [("user", user, "pts/0", "10.0.0.5", login, 3100, "", "")]

    def _osquery_flags(self, now: float) -> list[Row]:
        values = self.facts.flags
        return [
            (name, kind, desc, default, values.get(name, default), 0)
            for name, kind, default, desc in catalog.OSQUERY_FLAGS
        ]
