"""Static catalogues the inventory draws from: people, system users and groups, hardware,
osquery's flags (the programs a host runs are in `process_catalog`).

Plain data, per OS family. Names and versions are real-looking; what a given host has is
chosen from these by `inventory` with the host's seed.
"""

from __future__ import annotations

# -- people and groups ------------------------------------------------------------------------

FIRST_NAMES = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yasmin",
    "zoe",
    "amir",
    "bea",
    "chen",
    "dmitri",
    "emeka",
    "fatima",
    "goran",
    "hana",
    "ingrid",
    "jonas",
    "kenji",
    "lucia",
    "mateo",
    "nadia",
    "omar",
    "priya",
    "quinn",
    "rosa",
)

LINUX_SYSTEM_USERS: tuple[tuple[str, int, int, str, str, str], ...] = (
    # (username, uid, gid, description, directory, shell)
    ("root", 0, 0, "root", "/root", "/bin/bash"),
    ("daemon", 1, 1, "daemon", "/usr/sbin", "/usr/sbin/nologin"),
    ("bin", 2, 2, "bin", "/bin", "/usr/sbin/nologin"),
    ("sys", 3, 3, "sys", "/dev", "/usr/sbin/nologin"),
    ("sync", 4, 65534, "sync", "/bin", "/bin/sync"),
    ("www-data", 33, 33, "www-data", "/var/www", "/usr/sbin/nologin"),
    ("nobody", 65534, 65534, "nobody", "/nonexistent", "/usr/sbin/nologin"),
    (
        "systemd-network",
        100,
        102,
        "systemd Network Management",
        "/run/systemd",
        "/usr/sbin/nologin",
    ),
    ("systemd-resolve", 101, 103, "systemd Resolver", "/run/systemd", "/usr/sbin/nologin"),
    ("messagebus", 102, 105, "", "/nonexistent", "/usr/sbin/nologin"),
    ("syslog", 104, 111, "", "/home/syslog", "/usr/sbin/nologin"),
    ("_chrony", 105, 113, "Chrony daemon", "/var/lib/chrony", "/usr/sbin/nologin"),
    ("sshd", 106, 65534, "", "/run/sshd", "/usr/sbin/nologin"),
    ("postgres", 113, 120, "PostgreSQL administrator", "/var/lib/postgresql", "/bin/bash"),
)

DARWIN_SYSTEM_USERS: tuple[tuple[str, int, int, str, str, str], ...] = (
    ("root", 0, 0, "System Administrator", "/var/root", "/bin/sh"),
    ("daemon", 1, 1, "System Services", "/var/root", "/usr/bin/false"),
    ("nobody", 4294967294, 4294967294, "Unprivileged User", "/var/empty", "/usr/bin/false"),
    ("_mdnsresponder", 65, 65, "mDNSResponder", "/var/empty", "/usr/bin/false"),
    ("_windowserver", 88, 88, "WindowServer", "/var/empty", "/usr/bin/false"),
    (
        "_softwareupdate",
        200,
        200,
        "Software Update Service",
        "/var/db/softwareupdate",
        "/usr/bin/false",
    ),
)

WINDOWS_SYSTEM_USERS: tuple[tuple[str, int, int, str, str, str], ...] = (
    (
        "SYSTEM",
        18,
        18,
        "",
        "%systemroot%\\system32\\config\\systemprofile",
        "C:\\Windows\\system32\\cmd.exe",
    ),
    (
        "LOCAL SERVICE",
        19,
        19,
        "",
        "%systemroot%\\ServiceProfiles\\LocalService",
        "C:\\Windows\\system32\\cmd.exe",
    ),
    (
        "NETWORK SERVICE",
        20,
        20,
        "",
        "%systemroot%\\ServiceProfiles\\NetworkService",
        "C:\\Windows\\system32\\cmd.exe",
    ),
    (
        "Administrator",
        500,
        513,
        "Built-in account for administering the computer/domain",
        "",
        "C:\\Windows\\system32\\cmd.exe",
    ),
    (
        "Guest",
        501,
        513,
        "Built-in account for guest access to the computer/domain",
        "",
        "C:\\Windows\\system32\\cmd.exe",
    ),
    (
        "DefaultAccount",
        503,
        513,
        "A user account managed by the system.",
        "",
        "C:\\Windows\\system32\\cmd.exe",
    ),
)

SYSTEM_USERS = {
    "linux": LINUX_SYSTEM_USERS,
    "darwin": DARWIN_SYSTEM_USERS,
    "windows": WINDOWS_SYSTEM_USERS,
}

GROUPS: dict[str, tuple[tuple[str, int], ...]] = {
    "linux": (
        ("root", 0),
        ("daemon", 1),
        ("bin", 2),
        ("sys", 3),
        ("adm", 4),
        ("tty", 5),
        ("disk", 6),
        ("wheel", 10),
        ("mail", 12),
        ("www-data", 33),
        ("sudo", 27),
        ("users", 100),
        ("systemd-journal", 101),
        ("systemd-network", 102),
        ("systemd-resolve", 103),
        ("messagebus", 105),
        ("syslog", 111),
        ("_chrony", 113),
        ("postgres", 120),
        ("docker", 999),
        ("nogroup", 65534),
    ),
    "darwin": (
        ("wheel", 0),
        ("daemon", 1),
        ("kmem", 2),
        ("sys", 3),
        ("tty", 4),
        ("operator", 5),
        ("staff", 20),
        ("everyone", 12),
        ("admin", 80),
        ("_mdnsresponder", 65),
        ("_windowserver", 88),
        ("_softwareupdate", 200),
        ("nobody", 4294967294),
    ),
    "windows": (
        ("Administrators", 544),
        ("Users", 545),
        ("Guests", 546),
        ("Power Users", 547),
        ("Remote Desktop Users", 555),
        ("Network Configuration Operators", 556),
        ("Performance Monitor Users", 558),
        ("Event Log Readers", 573),
        ("Hyper-V Administrators", 578),
        ("Remote Management Users", 580),
    ),
}

HARDWARE: dict[str, tuple[tuple[str, str, str], ...]] = {
    # (vendor, model, cpu brand)
    "linux": (
        ("Amazon EC2", "m5.xlarge", "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"),
        ("Amazon EC2", "c6i.2xlarge", "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"),
        ("Google", "Google Compute Engine", "AMD EPYC 7B12"),
        ("Dell Inc.", "PowerEdge R650", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"),
        ("QEMU", "Standard PC (Q35 + ICH9, 2009)", "AMD EPYC-Milan Processor"),
    ),
    "darwin": (
        ("Apple Inc.", "MacBookPro18,3", "Apple M1 Pro"),
        ("Apple Inc.", "Mac14,2", "Apple M2"),
        ("Apple Inc.", "Mac15,6", "Apple M3 Pro"),
        ("Apple Inc.", "MacBookPro16,1", "Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz"),
    ),
    "windows": (
        ("Dell Inc.", "Latitude 7440", "13th Gen Intel(R) Core(TM) i7-1365U"),
        ("LENOVO", "20XW00JCUS", "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz"),
        ("HP", "HP EliteBook 840 G8 Notebook PC", "11th Gen Intel(R) Core(TM) i5-1145G7 @ 2.60GHz"),
        ("Microsoft Corporation", "Virtual Machine", "AMD EPYC 7763 64-Core Processor"),
    ),
}

#: Flags in osquery_flags, with osquery's defaults (the host overrides a few from config).
OSQUERY_FLAGS: tuple[tuple[str, str, str, str], ...] = (
    # (name, type, default, description)
    ("config_plugin", "string", "filesystem", "Config plugin name"),
    ("config_refresh", "uint64", "0", "Optional interval in seconds to re-read configuration"),
    ("config_tls_refresh", "uint64", "0", "Alias for config_refresh"),
    (
        "config_accelerated_refresh",
        "uint64",
        "300",
        "Interval to wait if reading a configuration fails",
    ),
    ("distributed_interval", "uint64", "60", "Seconds between polling for new queries"),
    ("distributed_plugin", "string", "tls", "Distributed plugin name"),
    ("distributed_tls_max_attempts", "uint64", "3", "Number of times to attempt a request"),
    ("disable_distributed", "bool", "true", "Disable distributed queries"),
    ("enroll_tls_endpoint", "string", "", "TLS/HTTPS endpoint for client enrollment"),
    (
        "host_identifier",
        "string",
        "hostname",
        "Field used to identify the host running osquery (hostname, uuid, instance, ephemeral, "
        "specified)",
    ),
    ("logger_plugin", "string", "filesystem", "Logger plugin name"),
    ("logger_tls_compress", "bool", "false", "GZip compress TLS/HTTPS request body"),
    ("logger_tls_max_lines", "uint64", "1024", "Max number of logs to send per period"),
    ("logger_tls_period", "uint64", "4", "Seconds between flushing logs over TLS/HTTPS"),
    ("pack_delimiter", "string", "_", "Delimiter for pack and query names"),
    ("schedule_splay_percent", "uint64", "10", "Percent to splay config times"),
    ("tls_hostname", "string", "", "TLS/HTTPS hostname for Config, Logger, and Enroll plugins"),
    (
        "tls_server_certs",
        "string",
        "/opt/osquery/share/osquery/certs/certs.pem",
        "Optional path to a TLS server PEM certificate(s) bundle",
    ),
    ("verbose", "bool", "false", "Enable verbose informational messages"),
    ("watchdog_level", "int32", "0", "Performance limit level (0=normal, 1=restrictive, -1=off)"),
)
