"""Who may do what: roles admin > maintainer > observer, global or per team.

A global role applies to every host; a team role to that team's hosts only. Team users see
and target only their teams' hosts; an object they may not see is answered as missing (404),
so ids do not leak. Observers run only saved queries marked `observer_can_run`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleetwatch.fleet.errors import Forbidden, NotFound
from fleetwatch.fleet.users import User

RANK = {"observer": 1, "maintainer": 2, "admin": 3}


@dataclass(frozen=True)
class Access:
    """The permissions of one user."""

    user: User

    @property
    def is_global(self) -> bool:
        return self.user.global_role is not None

    def global_at_least(self, role: str) -> bool:
        return RANK.get(self.user.global_role or "", 0) >= RANK[role]

    def team_role(self, team_id: int | None) -> str | None:
        """The user's effective role on a team (the global role counts everywhere)."""
        best = self.user.global_role
        if team_id is not None:
            for team in self.user.teams:
                if team.team_id == team_id and RANK.get(team.role, 0) > RANK.get(best or "", 0):
                    best = team.role
        return best

    def on_team_at_least(self, team_id: int | None, role: str) -> bool:
        return RANK.get(self.team_role(team_id) or "", 0) >= RANK[role]

    def visible_teams(self) -> set[int] | None:
        """Team ids whose hosts the user sees; None means every host (a global role)."""
        if self.is_global:
            return None
        return {t.team_id for t in self.user.teams}

    def can_see_team(self, team_id: int | None) -> bool:
        teams = self.visible_teams()
        return teams is None or (team_id is not None and team_id in teams)

    def require_global(self, role: str, what: str) -> None:
        """403 unless the user holds at least `role` globally."""
        if not self.global_at_least(role):
            raise Forbidden(f"{what} needs the global {role} role")

    def require_on_team(self, team_id: int | None, role: str, what: str) -> None:
        if not self.on_team_at_least(team_id, role):
            where = "globally" if team_id is None else f"on team {team_id}"
            raise Forbidden(f"{what} needs the {role} role {where}")

    def require_host(self, host_id: int, team_id: int | None, exists: bool) -> None:
        """404 for a host that does not exist or that the user may not see."""
        if not exists or not self.can_see_team(team_id):
            raise NotFound(f"no host with id {host_id}")

    def filter_hosts(self, hosts: Iterable[tuple[int, int | None]]) -> set[int]:
        """The ids among (host id, team id) pairs that the user may see."""
        teams = self.visible_teams()
        return {h for h, t in hosts if teams is None or (t is not None and t in teams)}
