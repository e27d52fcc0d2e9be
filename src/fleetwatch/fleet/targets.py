"""Campaign targets: parsing both request forms and resolving them to a set of host ids.

Fleet's rules (reference §1.3): hosts are always included; the builtin "All hosts" (or a
target of type `all`) selects everything; otherwise labels of one kind are OR-ed and builtin
labels AND custom labels AND teams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.fleet.errors import Invalid
from fleetwatch.fleet.host_state import HostState

TARGET_TYPES = ("host", "label", "team", "all")


@dataclass(frozen=True)
class Targets:
    """What a campaign asks for, by kind."""

    hosts: frozenset[int] = frozenset()
    labels: frozenset[int] = frozenset()
    teams: frozenset[int] = frozenset()
    all: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "hosts": sorted(self.hosts),
            "labels": sorted(self.labels),
            "teams": sorted(self.teams),
            "all": self.all,
        }

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.labels or self.teams or self.all)


def _ids(value: Any, where: str) -> frozenset[int]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise Invalid(f"{where} must be a list of ids")
    out = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise Invalid(f"{where} must hold integer ids, not {item!r}")
        out.add(item)
    return frozenset(out)


def parse_targets(targets: Any, selected: Any) -> Targets:
    """Targets from `targets: [{type, id}]` and/or Fleet's `selected: {hosts, labels, teams}`."""
    hosts: set[int] = set()
    labels: set[int] = set()
    teams: set[int] = set()
    everything = False
    if targets is not None:
        if not isinstance(targets, list):
            raise Invalid("targets must be a list of {type, id} objects")
        for i, item in enumerate(targets):
            if not isinstance(item, Mapping):
                raise Invalid(f"targets[{i}] must be an object with type and id")
            kind = item.get("type")
            if kind not in TARGET_TYPES:
                raise Invalid(f"targets[{i}].type must be one of {', '.join(TARGET_TYPES)}")
            if kind == "all":
                everything = True
                continue
            ident = item.get("id")
            if isinstance(ident, bool) or not isinstance(ident, int) or ident < 0:
                raise Invalid(f"targets[{i}].id must be an integer id")
            {"host": hosts, "label": labels, "team": teams}[kind].add(ident)
    if selected is not None:
        if not isinstance(selected, Mapping):
            raise Invalid("selected must be an object with hosts, labels and teams lists")
        hosts |= _ids(selected.get("hosts"), "selected.hosts")
        labels |= _ids(selected.get("labels"), "selected.labels")
        teams |= _ids(selected.get("teams"), "selected.teams")
    return Targets(frozenset(hosts), frozenset(labels), frozenset(teams), everything)


@dataclass
class LabelInfo:
    """What target resolution needs to know of a label."""

    id: int
    builtin: bool
    all_hosts: bool = False
    members: frozenset[int] = field(default_factory=frozenset)


LabelLookup = Callable[[int], LabelInfo | None]


def resolve_targets(
    targets: Targets,
    hosts: Iterable[HostState],
    known_host: Callable[[int], bool],
    label: LabelLookup,
    known_team: Callable[[int], bool],
) -> set[int]:
    """The ids of the hosts the targets select; Invalid names an unknown id."""
    for host_id in sorted(targets.hosts):
        if not known_host(host_id):
            raise Invalid(f"no host with id {host_id}")
    for team_id in sorted(targets.teams):
        if team_id != 0 and not known_team(team_id):
            raise Invalid(f"no team with id {team_id}")
    infos = []
    for label_id in sorted(targets.labels):
        info = label(label_id)
        if info is None:
            raise Invalid(f"no label with id {label_id}")
        infos.append(info)
    all_hosts = list(hosts)
    if targets.all or any(i.all_hosts for i in infos):
        return {h.id for h in all_hosts}
    selected = set(targets.hosts)
    if not (targets.labels or targets.teams):
        return selected
    builtin = [i for i in infos if i.builtin]
    custom = [i for i in infos if not i.builtin]
    for host in all_hosts:
        if custom and not any(host.id in i.members for i in custom):
            continue
        if builtin and not any(host.id in i.members for i in builtin):
            continue
        if targets.teams and (host.team_id or 0) not in targets.teams:
            continue
        selected.add(host.id)
    return selected
