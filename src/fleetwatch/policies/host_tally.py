"""How many hosts each (team, platform family) has: what a policy's targeted count is.

Followed from the `fleet:host` documents in the change log (so on a cluster every node
counts every node's enrolments, transfers and deletions), the tally makes a policy's
unknown count a sum over a few (team, family) pairs instead of a walk over every host.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from fleetwatch.fleet.host_state import HOST_KIND, HostState
from fleetwatch.fleet.label_definitions import platform_family
from fleetwatch.index import Action, Change, DocumentIndex

#: (team id, platform family) of a host.
Key = tuple[int | None, str]


class HostTally:
    """Hosts per (team, platform family), kept in step with the host documents."""

    def __init__(self, index: DocumentIndex) -> None:
        self.index = index
        self._key: dict[int, Key] = {}
        self._count: Counter[Key] = Counter()
        self._listening = False

    def load(self, hosts: Iterable[HostState]) -> None:
        """Follow the change log from now on and count the hosts known now."""
        self.index.add_listener(self._on_changes)
        self._listening = True
        for host in hosts:
            self._put(host.id, (host.team_id, platform_family(host.platform)))

    def stop(self) -> None:
        if self._listening:
            self.index.remove_listener(self._on_changes)
            self._listening = False

    def _on_changes(self, batch: Sequence[Change]) -> None:
        for change in batch:
            if change.kind != HOST_KIND:
                continue
            suffix = change.self_link.rsplit("/", 1)[-1]
            if not suffix.isdigit():
                continue
            host_id = int(suffix)
            if change.action is Action.DELETE:
                self._put(host_id, None)
                continue
            body = change.body
            before = self._key.get(host_id)
            team = body.get("team_id", before[0] if before else None)
            platform = body.get("platform")
            family = platform_family(platform) if isinstance(platform, str) else None
            self._put(
                host_id,
                (
                    team if isinstance(team, int) and not isinstance(team, bool) else None,
                    family if family is not None else (before[1] if before else ""),
                ),
            )

    def _put(self, host_id: int, key: Key | None) -> None:
        before = self._key.pop(host_id, None)
        if before is not None:
            self._count[before] -= 1
            if not self._count[before]:
                del self._count[before]
        if key is not None:
            self._key[host_id] = key
            self._count[key] += 1

    def targeted(
        self, team_id: int | None, families: frozenset[str], teams: set[int] | None
    ) -> int:
        """Hosts a policy of `team_id` (None: global) on `families` (empty: every
        platform) runs on, among those of `teams` (None: every host)."""
        return sum(
            n
            for (team, family), n in self._count.items()
            if (team_id is None or team == team_id)
            and (not families or family in families)
            and (teams is None or team in teams)
        )
