"""The programs a simulated host may run, per OS family: long-lived daemons and transient
processes, with their paths, arguments, owners and listening ports. Plain data; which ones a
host runs is chosen by `inventory` with the host's seed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """A program that can run on a host: name, path, arguments, owner and listening ports."""

    name: str
    path: str
    args: str = ""
    uid: int = 0
    ports: tuple[int, ...] = ()
    threads: int = 1
    memory_kib: int = 8_000


# -- processes --------------------------------------------------------------------------------

LINUX_DAEMONS: tuple[ProcessSpec, ...] = (
    ProcessSpec(
        "systemd", "/usr/lib/systemd/systemd", "--system --deserialize 31", 0, (), 1, 12_000
    ),
    ProcessSpec("kthreadd", "", "", 0, (), 1, 0),
    ProcessSpec("systemd-journal", "/usr/lib/systemd/systemd-journald", "", 0, (), 1, 40_000),
    ProcessSpec("systemd-udevd", "/usr/lib/systemd/systemd-udevd", "", 0, (), 1, 7_000),
    ProcessSpec("systemd-network", "/usr/lib/systemd/systemd-networkd", "", 100, (), 1, 8_000),
    ProcessSpec("systemd-resolve", "/usr/lib/systemd/systemd-resolved", "", 101, (53,), 1, 13_000),
    ProcessSpec("systemd-logind", "/usr/lib/systemd/systemd-logind", "", 0, (), 1, 7_500),
    ProcessSpec(
        "dbus-daemon",
        "/usr/bin/dbus-daemon",
        "--system --address=systemd: --nofork --nopidfile --systemd-activation",
        102,
        (),
        1,
        5_000,
    ),
    ProcessSpec("cron", "/usr/sbin/cron", "-f -P", 0, (), 1, 2_800),
    ProcessSpec("rsyslogd", "/usr/sbin/rsyslogd", "-n -iNONE", 104, (), 4, 6_000),
    ProcessSpec("sshd", "/usr/sbin/sshd", "-D", 0, (22,), 1, 9_000),
    ProcessSpec("chronyd", "/usr/sbin/chronyd", "-F 1", 105, (323,), 1, 3_500),
    ProcessSpec(
        "osqueryd",
        "/opt/osquery/bin/osqueryd",
        "--flagfile=/etc/osquery/osquery.flags --config_plugin=tls",
        0,
        (),
        14,
        60_000,
    ),
    ProcessSpec("agetty", "/sbin/agetty", "-o -p -- \\u --noclear tty1 linux", 0, (), 1, 2_000),
    ProcessSpec(
        "nginx", "/usr/sbin/nginx", "-g daemon on; master_process on;", 0, (80, 443), 1, 11_000
    ),
    ProcessSpec(
        "postgres",
        "/usr/lib/postgresql/14/bin/postgres",
        "-D /var/lib/postgresql/14/main",
        113,
        (5432,),
        1,
        30_000,
    ),
    ProcessSpec("containerd", "/usr/bin/containerd", "", 0, (), 12, 45_000),
    ProcessSpec("node_exporter", "/usr/local/bin/node_exporter", "", 65534, (9100,), 6, 20_000),
)

LINUX_TRANSIENT: tuple[ProcessSpec, ...] = (
    ProcessSpec("bash", "/usr/bin/bash", "-bash", 1000, (), 1, 5_000),
    ProcessSpec("sshd", "/usr/sbin/sshd", "sshd: deploy@pts/0", 1000, (), 1, 8_000),
    ProcessSpec(
        "python3", "/usr/bin/python3.10", "/opt/app/worker.py --queue default", 1000, (), 4, 60_000
    ),
    ProcessSpec("python3", "/usr/bin/python3.10", "-m http.server 8000", 1000, (8000,), 1, 20_000),
    ProcessSpec("vim", "/usr/bin/vim.basic", "/etc/nginx/nginx.conf", 1000, (), 1, 9_000),
    ProcessSpec("top", "/usr/bin/top", "", 1000, (), 1, 4_000),
    ProcessSpec("sleep", "/usr/bin/sleep", "300", 0, (), 1, 1_000),
    ProcessSpec("curl", "/usr/bin/curl", "-s https://example.com/health", 0, (), 1, 6_000),
    ProcessSpec(
        "java",
        "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
        "-Xmx2g -jar /opt/service/app.jar",
        1001,
        (8080,),
        40,
        900_000,
    ),
    ProcessSpec("node", "/usr/bin/node", "/srv/web/server.js", 1001, (3000,), 11, 120_000),
    ProcessSpec("tmux: server", "/usr/bin/tmux", "new -s work", 1000, (), 1, 4_500),
    ProcessSpec("apt-get", "/usr/bin/apt-get", "-qq update", 0, (), 1, 30_000),
    ProcessSpec("logrotate", "/usr/sbin/logrotate", "/etc/logrotate.conf", 0, (), 1, 3_000),
    ProcessSpec("kworker/0:1", "", "", 0, (), 1, 0),
    ProcessSpec("redis-server", "/usr/bin/redis-server", "127.0.0.1:6379", 114, (6379,), 5, 9_000),
)

DARWIN_DAEMONS: tuple[ProcessSpec, ...] = (
    ProcessSpec("launchd", "/sbin/launchd", "", 0, (), 4, 20_000),
    ProcessSpec("logd", "/usr/libexec/logd", "", 0, (), 4, 30_000),
    ProcessSpec("UserEventAgent", "/usr/libexec/UserEventAgent", "(System)", 0, (), 3, 9_000),
    ProcessSpec("kernel_task", "", "", 0, (), 200, 1_500_000),
    ProcessSpec(
        "mds",
        "/System/Library/Frameworks/CoreServices.framework/Frameworks/"
        "Metadata.framework/Support/mds",
        "",
        0,
        (),
        7,
        40_000,
    ),
    ProcessSpec("configd", "/usr/libexec/configd", "", 0, (), 7, 10_000),
    ProcessSpec(
        "WindowServer",
        "/System/Library/PrivateFrameworks/SkyLight.framework/Resources/WindowServer",
        "-daemon",
        88,
        (),
        12,
        200_000,
    ),
    ProcessSpec("mDNSResponder", "/usr/sbin/mDNSResponder", "", 65, (5353,), 3, 6_000),
    ProcessSpec("sshd", "/usr/sbin/sshd", "-i", 0, (22,), 1, 5_000),
    ProcessSpec(
        "osqueryd",
        "/opt/osquery/lib/osquery.app/Contents/MacOS/osqueryd",
        "--flagfile=/var/osquery/osquery.flags",
        0,
        (),
        14,
        50_000,
    ),
    ProcessSpec(
        "Finder",
        "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder",
        "",
        501,
        (),
        6,
        80_000,
    ),
    ProcessSpec(
        "Dock", "/System/Library/CoreServices/Dock.app/Contents/MacOS/Dock", "", 501, (), 5, 60_000
    ),
    ProcessSpec("rapportd", "/usr/libexec/rapportd", "", 501, (49152,), 4, 8_000),
)

DARWIN_TRANSIENT: tuple[ProcessSpec, ...] = (
    ProcessSpec(
        "Google Chrome",
        "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
        "",
        501,
        (),
        40,
        400_000,
    ),
    ProcessSpec("Slack", "/Applications/Slack.app/Contents/MacOS/Slack", "", 501, (), 25, 250_000),
    ProcessSpec(
        "zoom.us", "/Applications/zoom.us.app/Contents/MacOS/zoom.us", "", 501, (), 30, 300_000
    ),
    ProcessSpec(
        "Code",
        "/Applications/Visual Studio Code.app/Contents/MacOS/Electron",
        "",
        501,
        (),
        30,
        350_000,
    ),
    ProcessSpec("zsh", "/bin/zsh", "-zsh", 501, (), 1, 4_000),
    ProcessSpec(
        "Terminal",
        "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal",
        "",
        501,
        (),
        6,
        70_000,
    ),
    ProcessSpec(
        "Spotify", "/Applications/Spotify.app/Contents/MacOS/Spotify", "", 501, (), 35, 260_000
    ),
    ProcessSpec(
        "softwareupdated",
        "/System/Library/PrivateFrameworks/SoftwareUpdate.framework/Resources/softwareupdated",
        "",
        200,
        (),
        5,
        30_000,
    ),
    ProcessSpec(
        "mdworker_shared",
        "/System/Library/Frameworks/CoreServices.framework/"
        "Frameworks/Metadata.framework/Versions/A/Support/mdworker_shared",
        "-s mdworker -c MDSImporterWorker -m com.apple.mdworker.shared",
        501,
        (),
        3,
        12_000,
    ),
    ProcessSpec("python3", "/usr/bin/python3", "manage.py runserver", 501, (8000,), 2, 50_000),
    ProcessSpec(
        "Docker",
        "/Applications/Docker.app/Contents/MacOS/com.docker.backend",
        "",
        501,
        (),
        20,
        180_000,
    ),
)

WINDOWS_DAEMONS: tuple[ProcessSpec, ...] = (
    ProcessSpec("System", "", "", 0, (445, 139), 150, 150),
    ProcessSpec("smss.exe", "C:\\Windows\\System32\\smss.exe", "", 0, (), 2, 1_200),
    ProcessSpec("csrss.exe", "C:\\Windows\\System32\\csrss.exe", "", 0, (), 12, 5_500),
    ProcessSpec("wininit.exe", "C:\\Windows\\System32\\wininit.exe", "", 0, (), 1, 6_800),
    ProcessSpec("services.exe", "C:\\Windows\\System32\\services.exe", "", 0, (), 7, 11_000),
    ProcessSpec("lsass.exe", "C:\\Windows\\System32\\lsass.exe", "", 0, (49664,), 9, 20_000),
    ProcessSpec(
        "svchost.exe",
        "C:\\Windows\\System32\\svchost.exe",
        "-k DcomLaunch -p",
        0,
        (135,),
        15,
        30_000,
    ),
    ProcessSpec(
        "svchost.exe",
        "C:\\Windows\\System32\\svchost.exe",
        "-k NetworkService -p -s Dnscache",
        0,
        (5353,),
        8,
        12_000,
    ),
    ProcessSpec("spoolsv.exe", "C:\\Windows\\System32\\spoolsv.exe", "", 0, (), 10, 15_000),
    ProcessSpec(
        "MsMpEng.exe",
        "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24040.4-0\\MsMpEng.exe",
        "",
        0,
        (),
        35,
        250_000,
    ),
    ProcessSpec(
        "osqueryd.exe",
        "C:\\Program Files\\osquery\\osqueryd\\osqueryd.exe",
        "--flagfile=C:\\Program Files\\osquery\\osquery.flags",
        0,
        (),
        14,
        55_000,
    ),
    ProcessSpec("explorer.exe", "C:\\Windows\\explorer.exe", "", 1001, (), 60, 150_000),
    ProcessSpec(
        "TermService", "C:\\Windows\\System32\\svchost.exe", "-k termsvcs", 0, (3389,), 12, 14_000
    ),
)

WINDOWS_TRANSIENT: tuple[ProcessSpec, ...] = (
    ProcessSpec(
        "chrome.exe",
        "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
        "",
        1001,
        (),
        30,
        300_000,
    ),
    ProcessSpec(
        "msedge.exe",
        "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
        "",
        1001,
        (),
        30,
        250_000,
    ),
    ProcessSpec(
        "Teams.exe",
        "C:\\Users\\user\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe",
        "",
        1001,
        (),
        40,
        350_000,
    ),
    ProcessSpec(
        "OUTLOOK.EXE",
        "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE",
        "",
        1001,
        (),
        50,
        280_000,
    ),
    ProcessSpec(
        "powershell.exe",
        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "-NoProfile",
        1001,
        (),
        12,
        70_000,
    ),
    ProcessSpec("cmd.exe", "C:\\Windows\\System32\\cmd.exe", "", 1001, (), 1, 4_000),
    ProcessSpec("notepad.exe", "C:\\Windows\\System32\\notepad.exe", "", 1001, (), 4, 14_000),
    ProcessSpec(
        "TiWorker.exe",
        "C:\\Windows\\WinSxS\\amd64_microsoft-windows-servicingstack\\TiWorker.exe",
        "-Embedding",
        0,
        (),
        6,
        40_000,
    ),
    ProcessSpec(
        "OneDrive.exe",
        "C:\\Program Files\\Microsoft OneDrive\\OneDrive.exe",
        "/background",
        1001,
        (),
        25,
        90_000,
    ),
    ProcessSpec(
        "Code.exe",
        "C:\\Users\\user\\AppData\\Local\\Programs\\Microsoft VS Code\\Code.exe",
        "",
        1001,
        (),
        30,
        300_000,
    ),
)

DAEMONS = {"linux": LINUX_DAEMONS, "darwin": DARWIN_DAEMONS, "windows": WINDOWS_DAEMONS}
TRANSIENT = {"linux": LINUX_TRANSIENT, "darwin": DARWIN_TRANSIENT, "windows": WINDOWS_TRANSIENT}
