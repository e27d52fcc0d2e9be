"""The osquery tables a simulated host has: columns and types as in osquery's specs/.

Types decide SQLite affinity, so `WHERE pid > 100` compares numbers as on a real agent.
A table exists only on the families listed for it (osquery_registry lists the same set).
"""

from __future__ import annotations

from dataclasses import dataclass

INTEGER, BIGINT, TEXT, DOUBLE = "INTEGER", "BIGINT", "TEXT", "DOUBLE"

ALL = frozenset({"linux", "darwin", "windows"})
POSIX = frozenset({"linux", "darwin"})

#: One row of a table, its values in schema column order.
Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table: ordered (column, type) pairs, the families that have it, and whether each
    host has its own rows (`per_host`) or every host of an OS release shares them."""

    name: str
    columns: tuple[tuple[str, str], ...]
    families: frozenset[str] = ALL
    per_host: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def create_sql(self) -> str:
        cols = ", ".join(f'"{name}" {kind}' for name, kind in self.columns)
        return f'CREATE TABLE "{self.name}" ({cols})'

    def insert_sql(self) -> str:
        marks = ", ".join("?" for _ in self.columns)
        return f'INSERT INTO "{self.name}" VALUES ({marks})'


def _cols(spec: str) -> tuple[tuple[str, str], ...]:
    """`"pid:I name:T"` -> (("pid", "INTEGER"), ("name", "TEXT")); the type defaults to TEXT."""
    kinds = {"I": INTEGER, "B": BIGINT, "T": TEXT, "D": DOUBLE}
    out = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        out.append((name, kinds[kind or "T"]))
    return tuple(out)


SCHEMAS: dict[str, TableSchema] = {
    s.name: s
    for s in (
        TableSchema(
            "system_info",
            _cols(
                "hostname uuid cpu_type cpu_subtype cpu_brand cpu_physical_cores:I "
                "cpu_logical_cores:I cpu_sockets:I cpu_microcode physical_memory:B "
                "hardware_vendor hardware_model hardware_version hardware_serial board_vendor "
                "board_model board_version board_serial computer_name local_hostname"
            ),
        ),
        TableSchema(
            "os_version",
            _cols(
                "name version major:I minor:I patch:I build platform platform_like codename "
                "arch extra install_date:B revision:I"
            ),
            per_host=False,
        ),
        TableSchema(
            "osquery_info",
            _cols(
                "pid:I uuid instance_id version config_hash config_valid:I extensions "
                "build_platform build_distro start_time:I watcher:I platform_mask:I"
            ),
        ),
        TableSchema(
            "platform_info",
            _cols("vendor version date revision extra firmware_type address size volume_size"),
        ),
        TableSchema("uptime", _cols("days:I hours:I minutes:I seconds:I total_seconds:B")),
        TableSchema(
            "time",
            _cols(
                "weekday year:I month:I day:I hour:I minutes:I seconds:I timezone "
                "local_timezone unix_time:I timestamp datetime iso_8601"
            ),
        ),
        TableSchema(
            "processes",
            _cols(
                "pid:B name path cmdline state cwd root uid:B gid:B euid:B egid:B suid:B "
                "sgid:B on_disk:I wired_size:B resident_size:B total_size:B user_time:B "
                "system_time:B disk_bytes_read:B disk_bytes_written:B start_time:B parent:B "
                "pgroup:B threads:I nice:I"
            ),
        ),
        TableSchema(
            "users",
            _cols(
                "uid:B gid:B uid_signed:B gid_signed:B username description directory shell "
                "uuid type is_hidden:I"
            ),
        ),
        TableSchema(
            "groups",
            _cols("gid:B gid_signed:B groupname group_sid comment is_hidden:I"),
            per_host=False,
        ),
        TableSchema(
            "logged_in_users",
            _cols("type user tty host time:I pid:I sid registry_hive"),
        ),
        TableSchema(
            "listening_ports",
            _cols("pid:I port:I protocol:I family:I address fd:B socket:B path net_namespace"),
        ),
        TableSchema(
            "interface_addresses",
            _cols("interface address mask broadcast point_to_point type friendly_name"),
        ),
        TableSchema(
            "interface_details",
            _cols(
                "interface mac type:I mtu:I metric:I flags:I ipackets:B opackets:B ibytes:B "
                "obytes:B ierrors:B oerrors:B idrops:B odrops:B collisions:B last_change:B "
                "link_speed:B pci_slot friendly_name description manufacturer connection_id "
                "connection_status enabled:I physical_adapter:I speed:I dhcp_enabled:I"
            ),
        ),
        TableSchema(
            "mounts",
            _cols(
                "device device_alias path type blocks_size:B blocks:B blocks_free:B "
                "blocks_available:B inodes:B inodes_free:B flags"
            ),
            families=POSIX,
        ),
        TableSchema(
            "logical_drives",
            _cols("device_id type description boot_partition:I size:B free_space:B file_system"),
            families=frozenset({"windows"}),
        ),
        TableSchema("kernel_info", _cols("version arguments path device"), per_host=False),
        TableSchema(
            "deb_packages",
            _cols(
                "name version source size:B arch revision status maintainer section priority "
                "admindir"
            ),
            families=frozenset({"linux"}),
            per_host=False,
        ),
        TableSchema(
            "rpm_packages",
            _cols(
                "name version release source size:B sha1 arch epoch:I install_time:I vendor "
                "package_group"
            ),
            families=frozenset({"linux"}),
            per_host=False,
        ),
        TableSchema(
            "apps",
            _cols(
                "name path bundle_executable bundle_identifier bundle_name "
                "bundle_short_version bundle_version bundle_package_type environment element "
                "compiler development_region display_name info_string minimum_system_version "
                "category applescript_enabled copyright last_opened_time:D"
            ),
            families=frozenset({"darwin"}),
            per_host=False,
        ),
        TableSchema(
            "programs",
            _cols(
                "name version install_location install_source language publisher "
                "uninstall_string install_date identifying_number package_family_name "
                "upgrade_code"
            ),
            families=frozenset({"windows"}),
            per_host=False,
        ),
        TableSchema(
            "osquery_registry",
            _cols("registry name owner_uuid:I internal:I active:I"),
            per_host=False,
        ),
        TableSchema(
            "osquery_flags",
            _cols("name type description default_value value shell_only:I"),
        ),
    )
}


def tables_for(family: str) -> list[TableSchema]:
    """The tables a host of this family has."""
    return [s for s in SCHEMAS.values() if family in s.families]
