"""Server settings an administrator changes at runtime (Fleet's app config `server_settings`).

Today one setting: `live_query_disabled`, the live query kill switch. It is stored as one
`fleet:app-config` document at `/fleet/config`, so it survives a restart and every node
sharing the database sees it: each node keeps the value in memory from the index's change
listener (another node's write arrives through the change log), not only from its own
PATCH. With no document, the `FLEETWATCH_LIVE_QUERIES_DISABLED` setting is the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetwatch.config import Settings
from fleetwatch.fleet.errors import Forbidden, Invalid
from fleetwatch.index import Action, Change, DocumentIndex, Write

APP_CONFIG_KIND = "fleet:app-config"
APP_CONFIG_LINK = "/fleet/config"
#: The `server_settings` fields PATCH accepts, with their types.
SERVER_SETTINGS: dict[str, type] = {"live_query_disabled": bool}
LIVE_QUERIES_DISABLED = (
    "live queries are disabled by the administrator (PATCH /api/v1/fleet/config with "
    '{"server_settings": {"live_query_disabled": false}} enables them)'
)


class AppConfigService:
    """The runtime server settings, kept current from the change log."""

    def __init__(self, index: DocumentIndex, settings: Settings) -> None:
        self.index = index
        self.settings = settings
        self._stored: dict[str, Any] = {}
        self._version = -1

    async def load(self) -> None:
        """Read the stored settings and follow their changes from now on."""
        self.index.add_listener(self._on_changes)
        doc = await self.index.get(APP_CONFIG_LINK)
        if doc is not None and doc.version > self._version:
            self._apply(doc.body, doc.version)

    def _on_changes(self, batch: Sequence[Change]) -> None:
        for change in batch:
            if change.self_link == APP_CONFIG_LINK and change.version > self._version:
                self._apply({} if change.action is Action.DELETE else change.body, change.version)

    def _apply(self, body: dict[str, Any], version: int) -> None:
        settings = body.get("server_settings")
        self._stored = dict(settings) if isinstance(settings, dict) else {}
        self._version = version

    # --- reads -------------------------------------------------------------------------

    @property
    def live_query_disabled(self) -> bool:
        """The kill switch: the stored value, else the setting."""
        value = self._stored.get("live_query_disabled")
        return value if isinstance(value, bool) else self.settings.live_queries_disabled

    def server_settings(self) -> dict[str, Any]:
        """The effective server settings, as GET /api/v1/fleet/config shows them."""
        return {"live_query_disabled": self.live_query_disabled}

    def require_live_queries(self) -> None:
        """Forbidden with a clear message while the kill switch is on."""
        if self.live_query_disabled:
            raise Forbidden(LIVE_QUERIES_DISABLED)

    # --- writes ------------------------------------------------------------------------

    async def patch(self, raw: object) -> dict[str, Any]:
        """Merge `{"server_settings": {...}}` into the stored settings; returns what changed
        (field -> [old, new]). Invalid names the field and what to send."""
        if not isinstance(raw, dict) or set(raw) - {"server_settings"}:
            extra = sorted(set(raw) - {"server_settings"}) if isinstance(raw, dict) else []
            what = f"unknown field {extra[0]!r}" if extra else "expected a JSON object"
            raise Invalid(
                f'body: {what}; send {{"server_settings": {{"live_query_disabled": '
                "true|false}} (the agent config is replaced with PUT)"
            )
        given = raw.get("server_settings")
        if given is None:
            return {}
        if not isinstance(given, dict):
            raise Invalid("server_settings: expected an object")
        for name, value in given.items():
            kind = SERVER_SETTINGS.get(name)
            if kind is None:
                raise Invalid(
                    f"server_settings.{name}: unknown setting "
                    f"(known: {', '.join(sorted(SERVER_SETTINGS))})"
                )
            if not isinstance(value, kind):
                raise Invalid(f"server_settings.{name}: expected true or false")
        before = self.server_settings()
        merged = {**self._stored, **given}
        change = await self.index.write(
            Write(
                Action.PUT,
                APP_CONFIG_LINK,
                APP_CONFIG_KIND,
                {"server_settings": merged},
            )
        )
        if change is not None and change.version > self._version:
            self._apply(change.body, change.version)
        after = self.server_settings()
        return {k: [before[k], after[k]] for k in after if before[k] != after[k]}
