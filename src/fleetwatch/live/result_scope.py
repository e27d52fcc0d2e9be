"""Which hosts' answers a reader of a campaign sees: a team-only user only their teams'.

A campaign is visible to the user who started it and to global admins. Its results are
further scoped, as a task's scope does it (`fleetwatch.live.scope`): for a user with a
global role every host's, for a team-only user only those of hosts in one of their teams.
A stored answer counts by the team its host had when it answered (the result's own
`team_id`: a host moved to another team leaves its earlier answers behind); a host that has
not answered, by the team it is in now.

The scope is taken from the reader's roles at every read, never kept in a page cursor: a
cursor given out before the reader's teams changed goes on under the new teams (it is only
a position), so nothing the reader may no longer see is served through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.host_state import HostState

#: The current state of a host by id (None once deleted).
HostLookup = Callable[[int], HostState | None]


@dataclass(frozen=True, slots=True)
class ResultScope:
    """The teams whose hosts' results a reader sees; None: every host's."""

    teams: frozenset[int] | None = None

    @classmethod
    def of(cls, access: Access) -> ResultScope:
        """The scope of this reader's current roles."""
        teams = access.visible_teams()
        return cls(None if teams is None else frozenset(teams))

    @property
    def everything(self) -> bool:
        return self.teams is None

    def keeps_answer(self, result: dict[str, Any]) -> bool:
        """Whether a stored answer (with the `team_id` its host had) is visible."""
        return self.teams is None or result.get("team_id") in self.teams

    def keeps_host(self, host: HostState | None) -> bool:
        """Whether the entry of a host that has not answered is visible."""
        return self.teams is None or (host is not None and host.team_id in self.teams)

    def filter(self, results: Iterable[dict[str, Any]], hosts: HostLookup) -> list[dict[str, Any]]:
        """The visible ones of a campaign's entries: stored answers (they carry `team_id`)
        by their own team, the others by their host's team now."""
        if self.teams is None:
            return list(results)
        return [
            r
            for r in results
            if (
                self.keeps_answer(r)
                if "team_id" in r
                else self.keeps_host(hosts(int(r["host_id"])))
            )
        ]


#: The scope of a reader with a global role.
EVERY_HOST = ResultScope()
