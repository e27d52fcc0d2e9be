"""A policy, its documents' kinds and links, and the checks of its fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.host_state import iso

#: The kind of a policy's own document, at `/fleet/policies/{id}`.
POLICY_KIND = "fleet:policy"
#: The kind of one host's latest answer, at `/fleet/policies/{id}/hosts/{host_id}`.
RESULT_KIND = "fleet:policy-result"
#: The distributed query name prefix (Fleet's).
PREFIX = "fleet_policy_query_"
#: Seconds between a host's runs unless the policy says otherwise (Fleet's hourly default).
DEFAULT_INTERVAL = 3600
PLATFORM_FAMILIES = ("darwin", "windows", "linux")
#: A host's answer: it passes, it fails, or it is unknown (no answer yet, or an error).
PASS, FAIL, UNKNOWN = "pass", "fail", ""
RESPONSES = (PASS, FAIL, UNKNOWN)


def policy_link(policy_id: int) -> str:
    return f"/fleet/policies/{policy_id}"


def result_link(policy_id: int, host_id: int) -> str:
    return f"/fleet/policies/{policy_id}/hosts/{host_id}"


@dataclass
class Policy:
    id: int
    name: str
    description: str
    resolution: str
    query: str
    #: Comma-separated families ("" for every host).
    platform: str
    interval: int
    team_id: int | None
    created_at: float
    updated_at: float

    @property
    def families(self) -> frozenset[str]:
        return frozenset(p for p in self.platform.split(",") if p)

    def to_json(self) -> dict[str, Any]:
        """The policy's own fields (the counts are added by the service)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "resolution": self.resolution,
            "query": self.query,
            "platform": self.platform,
            "interval": self.interval,
            "team_id": self.team_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid('name must be a non-empty string, e.g. "Disk encryption on"')
    if len(value) > 255:
        raise Invalid("name is longer than 255 characters")
    return value.strip()


def check_platform(value: Any) -> str:
    """The platform list normalised ("darwin,linux"); Invalid naming an unknown one."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid('platform must be a string such as "darwin" or "darwin,linux"')
    parts = [p.strip() for p in value.split(",") if p.strip()]
    for part in parts:
        if part not in PLATFORM_FAMILIES:
            raise Invalid(
                f"platform {part!r} does not exist: send darwin, windows or linux "
                "(comma-separated), or leave it empty for every host"
            )
    return ",".join(sorted(set(parts)))


def check_interval(value: Any) -> int:
    if value is None:
        return DEFAULT_INTERVAL
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid("interval must be a whole number of seconds, at least 1 (default 3600)")
    if value > 365 * 86400:
        raise Invalid("interval must be at most a year (31536000 seconds)")
    return value


def check_text(field: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string")
    return value
