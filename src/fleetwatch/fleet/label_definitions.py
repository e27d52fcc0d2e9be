"""What a label is: its record, Fleet's built-in labels, the platform families a label may
name, and the label's forms in the `labels` table and as a `fleet:label` document."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

#: The document kind of a label definition (`/fleet/labels/{id}`).
LABEL_KIND = "fleet:label"
PLATFORMS = ("", "darwin", "windows", "linux")
LINUX_PLATFORMS = {
    "ubuntu",
    "debian",
    "centos",
    "rhel",
    "fedora",
    "amzn",
    "arch",
    "suse",
    "opensuse",
    "gentoo",
    "linux",
    "rocky",
    "almalinux",
    "oracle",
}

#: Fleet's built-in labels, answered by hosts like any dynamic label.
BUILTIN_LABELS: list[tuple[str, str, str]] = [
    ("All Hosts", "SELECT 1;", "All enrolled hosts"),
    ("macOS", "SELECT 1 FROM os_version WHERE platform = 'darwin';", "Hosts running macOS"),
    ("MS Windows", "SELECT 1 FROM os_version WHERE platform = 'windows';", "Hosts running Windows"),
    ("Ubuntu Linux", "SELECT 1 FROM os_version WHERE platform = 'ubuntu';", "Hosts running Ubuntu"),
    ("CentOS Linux", "SELECT 1 FROM os_version WHERE platform = 'centos';", "Hosts running CentOS"),
    (
        "Red Hat Linux",
        "SELECT 1 FROM os_version WHERE platform = 'rhel';",
        "Hosts running Red Hat Enterprise Linux",
    ),
    (
        "All Linux",
        "SELECT 1 FROM os_version WHERE platform IN ('ubuntu', 'debian', 'centos', 'rhel', "
        "'fedora', 'amzn', 'arch', 'suse', 'opensuse', 'gentoo', 'rocky', 'almalinux', 'oracle') "
        "OR platform_like LIKE '%debian%' OR platform_like LIKE '%rhel%';",
        "Hosts running any Linux",
    ),
]
ALL_HOSTS = "All Hosts"


def platform_family(platform: str) -> str:
    """darwin, windows or linux (or "" when unknown): what a label's `platform` names."""
    if platform in ("darwin", "windows"):
        return platform
    return "linux" if platform in LINUX_PLATFORMS else ""


@dataclass
class Label:
    id: int
    name: str
    description: str
    query: str
    platform: str
    label_type: str
    membership_type: str
    created_at: float
    updated_at: float

    @property
    def builtin(self) -> bool:
        return self.label_type == "builtin"


def label_from_row(row: Any) -> Label:
    """A label from its row of the `labels` table."""
    return Label(
        id=int(row["id"]),
        name=row["name"],
        description=row["description"],
        query=row["query"],
        platform=row["platform"],
        label_type=row["label_type"],
        membership_type=row["membership_type"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def label_from_document(label_id: int, body: Any) -> Label:
    """A label from its `fleet:label` document (another node's write); KeyError, ValueError
    or TypeError when the document is malformed."""
    return Label(
        id=label_id,
        name=str(body["name"]),
        description=str(body["description"]),
        query=str(body["query"]),
        platform=str(body["platform"]),
        label_type=str(body["label_type"]),
        membership_type=str(body["label_membership_type"]),
        created_at=_epoch(body["created_at"]),
        updated_at=_epoch(body["updated_at"]),
    )


def _epoch(value: Any) -> float:
    """Seconds since the epoch from a document's RFC 3339 time."""
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
