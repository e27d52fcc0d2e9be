"""Teams: a group of hosts with its own enroll secrets and config additions.

On a cluster each node keeps its cache current from the `fleet:team` documents of the
shared change log (every create, update and delete writes one), so nothing depends on a
broadcast that could be lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update

from fleetwatch.fleet.agent_config import validate_config
from fleetwatch.fleet.errors import Conflict, Invalid, NotFound
from fleetwatch.fleet.host_state import iso
from fleetwatch.index import Action, Change, DocumentIndex, Write
from fleetwatch.sql_check import off_loop
from fleetwatch.storage import Database
from fleetwatch.storage.schema import teams

TEAM_KIND = "fleet:team"
_FIELDS = ("id", "name", "description", "config", "created_at")


class TeamService:
    """Team CRUD; teams are cached in memory (they are read on every agent config fetch)."""

    def __init__(self, db: Database, index: DocumentIndex, *, follow: bool = False) -> None:
        self.db = db
        self.index = index
        #: Follow other nodes' changes from the change log (a cluster).
        self.follow = follow
        self._teams: dict[int, dict[str, Any]] = {}

    async def load(self) -> None:
        """Read every team (and on a cluster follow their documents from now on)."""
        if self.follow:
            self.index.add_listener(self._on_changes)
        async with self.db.connect() as conn:
            rows = await conn.execute(select(teams))
            self._teams = {int(r.id): self._json(r._mapping) for r in rows}

    def _on_changes(self, batch: Sequence[Change]) -> None:
        for change in batch:
            if change.kind != TEAM_KIND:
                continue
            suffix = change.self_link.rsplit("/", 1)[-1]
            if not suffix.isdigit():
                continue
            if change.action is Action.DELETE:
                self._teams.pop(int(suffix), None)
            elif all(k in change.body for k in _FIELDS):
                team = {k: change.body[k] for k in _FIELDS}
                team["config"] = team["config"] or {}
                self._teams[int(suffix)] = team

    @staticmethod
    def _json(row: Any) -> dict[str, Any]:
        return {
            "id": int(row["id"]),
            "name": row["name"],
            "description": row["description"],
            "config": row["config"] or {},
            "created_at": iso(row["created_at"]),
        }

    def known(self, team_id: int) -> bool:
        return team_id in self._teams

    def config_of(self, team_id: int | None) -> dict[str, Any]:
        """The team's config additions (empty for no team)."""
        if team_id is None or team_id not in self._teams:
            return {}
        config: dict[str, Any] = self._teams[team_id]["config"]
        return config

    def all_teams(self) -> list[dict[str, Any]]:
        return [dict(t) for t in sorted(self._teams.values(), key=lambda t: int(t["id"]))]

    def get(self, team_id: int) -> dict[str, Any]:
        team = self._teams.get(team_id)
        if team is None:
            raise NotFound(f"no team with id {team_id}")
        return dict(team)

    async def _check(self, name: Any, config: Any, own: int | None) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise Invalid("name must be a non-empty string of at most 255 characters")
        if any(t["name"] == name.strip() and t["id"] != own for t in self._teams.values()):
            raise Conflict(f"a team named {name.strip()!r} already exists")
        if config is not None:
            try:
                await off_loop(validate_config, config)
            except Invalid as exc:
                raise Invalid(f"config: {exc}") from exc

    async def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        await self._check(fields.get("name"), fields.get("config"), None)
        row = {
            "name": str(fields["name"]).strip(),
            "description": str(fields.get("description") or ""),
            "config": fields.get("config") or {},
            "created_at": time.time(),
        }
        async with self.db.transaction() as conn:
            team_id = int(
                (await conn.execute(insert(teams).returning(teams.c.id), [row])).scalar_one()
            )
        self._teams[team_id] = self._json({"id": team_id, **row})
        await self._index(team_id)
        return self.get(team_id)

    async def update(self, team_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        current = self.get(team_id)
        name = fields.get("name", current["name"])
        config = fields.get("config", current["config"])
        await self._check(name, config, team_id)
        values = {
            "name": str(name).strip(),
            "description": str(fields.get("description", current["description"]) or ""),
            "config": config or {},
        }
        async with self.db.transaction() as conn:
            await conn.execute(update(teams).where(teams.c.id == team_id).values(**values))
        self._teams[team_id].update(values)
        await self._index(team_id)
        return self.get(team_id)

    async def delete(self, team_id: int) -> None:
        """Delete a team: its hosts become hosts with no team; its secrets are revoked."""
        self.get(team_id)
        async with self.db.transaction() as conn:
            await conn.execute(delete(teams).where(teams.c.id == team_id))
        del self._teams[team_id]
        await self.index.write(Write(Action.DELETE, f"/fleet/teams/{team_id}"))

    async def _index(self, team_id: int) -> None:
        await self.index.write(
            Write(Action.PUT, f"/fleet/teams/{team_id}", TEAM_KIND, self.get(team_id))
        )
