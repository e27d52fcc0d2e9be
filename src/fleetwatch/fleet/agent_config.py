"""The osquery configuration served to agents: options, schedule, packs, decorators.

Operators set it through the API; it is validated here, because osquery rejects a config
over 1 MiB and silently ignores what it cannot parse. Every SQL in it (scheduled and pack
queries, pack discovery, decorators) is checked as live query SQL is: one read statement
SQLite can parse; an error names the query's path and the line and column in its SQL.
The options fleetwatch relies on (distributed_interval, logger_tls_period) are filled in
unless the operator sets them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import select

from fleetwatch.bus.bus import Invalidations
from fleetwatch.config import Settings
from fleetwatch.fleet.errors import Invalid
from fleetwatch.sql_check import InvalidSql, check_live_sql, off_loop
from fleetwatch.storage import Database
from fleetwatch.storage.schema import app_settings

#: osquery refuses configs larger than this ("the config size exceeds the limit").
MAX_CONFIG_BYTES = 1024 * 1024
_KEY = "osquery_config"
#: The invalidation topic of the stored config (other nodes reload it).
TOPIC = "agent_config"
TOP_LEVEL_KEYS = {
    "options",
    "schedule",
    "packs",
    "decorators",
    "file_paths",
    "file_paths_query",
    "file_accesses",
    "exclude_paths",
    "yara",
    "prometheus_targets",
    "views",
    "events",
    "auto_table_construction",
    "kafka_topics",
}
QUERY_KEYS = {
    "query",
    "interval",
    "snapshot",
    "removed",
    "platform",
    "version",
    "shard",
    "denylist",
    "blacklist",
    "description",
    "value",
}
#: About a week: osquery accepts larger intervals but they are surely a mistake.
MAX_INTERVAL = 604800

DEFAULT_CONFIG: dict[str, Any] = {
    "options": {
        "logger_tls_max_lines": 1024,
        "distributed_tls_max_attempts": 3,
        "host_identifier": "uuid",
    },
    "schedule": {},
    "packs": {},
    "decorators": {
        "load": [
            "SELECT uuid AS host_uuid FROM system_info;",
            "SELECT hostname AS hostname FROM system_info;",
        ]
    },
}


class AgentConfigService:
    """Stores the operator's osquery config and renders what each agent receives."""

    def __init__(
        self, db: Database, settings: Settings, invalidations: Invalidations | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.invalidations = invalidations
        self._config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self._rendered: dict[str, Any] = {}
        self._render()
        if invalidations is not None:
            invalidations.register(TOPIC, self.load)

    async def load(self) -> None:
        """Read the stored config (at start, and when another node changed it)."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(select(app_settings.c.value).where(app_settings.c.key == _KEY))
            ).first()
        if row is not None:
            self._config = dict(row.value)
        self._render()

    def stored(self) -> dict[str, Any]:
        """The operator's config as set (without the options fleetwatch adds)."""
        return copy.deepcopy(self._config)

    def for_agent(self, team_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The config JSON an agent receives (shared; callers must not mutate it).

        A team's additions are merged in: its options win, its schedule and packs are added,
        its decorators appended.
        """
        if not team_config:
            return self._rendered
        return merge_team_config(self._rendered, team_config)

    async def replace(self, config: Any) -> dict[str, Any]:
        """Validate and store a new config; returns what agents will receive."""
        await off_loop(validate_config, config)
        rendered = render_config(config, self.settings)
        size = len(orjson.dumps(rendered))
        if size > MAX_CONFIG_BYTES:
            raise Invalid(
                f"the config is {size} bytes; osquery rejects configs over {MAX_CONFIG_BYTES} "
                "bytes (1 MiB): move queries into fewer packs or shorten them"
            )
        async with self.db.transaction() as conn:
            table = app_settings
            exists = (await conn.execute(select(table.c.key).where(table.c.key == _KEY))).first()
            if exists is None:
                await conn.execute(table.insert(), [{"key": _KEY, "value": config}])
            else:
                await conn.execute(table.update().where(table.c.key == _KEY).values(value=config))
        self._config = copy.deepcopy(dict(config))
        self._render()
        if self.invalidations is not None:
            self.invalidations.changed(TOPIC)
        return self._rendered

    def _render(self) -> None:
        self._rendered = render_config(self._config, self.settings)


def render_config(config: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The operator's config plus the options fleetwatch needs, and `node_invalid: false`."""
    rendered = copy.deepcopy(dict(config))
    options = dict(rendered.get("options") or {})
    options.setdefault("distributed_interval", settings.distributed_interval)
    options.setdefault("logger_tls_period", settings.logger_tls_period)
    rendered["options"] = options
    rendered["node_invalid"] = False
    return rendered


def _fail(path: str, message: str) -> Invalid:
    return Invalid(f"{path}: {message}")


def _check_query(path: str, query: Any) -> None:
    if not isinstance(query, Mapping):
        raise _fail(path, "must be an object with query and interval")
    unknown = set(query) - QUERY_KEYS
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(sorted(unknown))}")
    sql = query.get("query")
    if not isinstance(sql, str) or not sql.strip():
        raise _fail(f"{path}.query", "must be a non-empty SQL string")
    _check_sql(f"{path}.query", sql)
    interval = query.get("interval")
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise _fail(f"{path}.interval", "must be an integer number of seconds")
    if not 1 <= interval <= MAX_INTERVAL:
        raise _fail(f"{path}.interval", f"must be between 1 and {MAX_INTERVAL} seconds")
    for flag in ("snapshot", "removed", "denylist", "blacklist"):
        if flag in query and not isinstance(query[flag], bool):
            raise _fail(f"{path}.{flag}", "must be true or false")
    shard = query.get("shard")
    if shard is not None and (
        isinstance(shard, bool) or not isinstance(shard, int) or not 1 <= shard <= 100
    ):
        raise _fail(f"{path}.shard", "must be an integer from 1 to 100")
    for text in ("platform", "version", "description"):
        if text in query and not isinstance(query[text], str):
            raise _fail(f"{path}.{text}", "must be a string")


def _check_sql(path: str, sql: str) -> None:
    """The checks of live query SQL: osquery runs these on every host too, and refuses
    a statement SQLite cannot parse only there, in its own log."""
    try:
        check_live_sql(sql)
    except InvalidSql as exc:
        raise _fail(path, str(exc)) from None


def _check_sql_list(path: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(path, "must be a list of SQL strings")
    for i, sql in enumerate(value):
        _check_sql(f"{path}[{i}]", sql)


def validate_config(config: Any) -> None:
    """Raise Invalid naming the first problem of an osquery config."""
    if not isinstance(config, Mapping):
        raise Invalid("the config must be a JSON object")
    unknown = set(config) - TOP_LEVEL_KEYS
    if unknown:
        raise Invalid(
            f"unknown top-level key(s) {', '.join(sorted(unknown))}; osquery understands "
            f"{', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    options = config.get("options", {})
    if not isinstance(options, Mapping):
        raise Invalid("options: must be an object of flag names to values")
    for name, value in options.items():
        if not isinstance(value, str | int | float | bool):
            raise _fail(f"options.{name}", "must be a string, number or boolean")
    schedule = config.get("schedule", {})
    if not isinstance(schedule, Mapping):
        raise Invalid("schedule: must be an object of query names to queries")
    for name, query in schedule.items():
        _check_query(f"schedule.{name}", query)
    packs = config.get("packs", {})
    if not isinstance(packs, Mapping):
        raise Invalid("packs: must be an object of pack names to packs")
    for name, pack in packs.items():
        if isinstance(pack, str):
            continue  # a path osquery resolves on the host
        if not isinstance(pack, Mapping):
            raise _fail(f"packs.{name}", "must be an object (or a path string)")
        queries = pack.get("queries", {})
        if not isinstance(queries, Mapping):
            raise _fail(f"packs.{name}.queries", "must be an object of query names to queries")
        for qname, query in queries.items():
            _check_query(f"packs.{name}.queries.{qname}", query)
        if "discovery" in pack:
            _check_sql_list(f"packs.{name}.discovery", pack["discovery"])
    decorators = config.get("decorators", {})
    if not isinstance(decorators, Mapping):
        raise Invalid("decorators: must be an object with load, always and interval")
    for key in ("load", "always"):
        if key in decorators:
            _check_sql_list(f"decorators.{key}", decorators[key])
    interval = decorators.get("interval", {})
    if not isinstance(interval, Mapping):
        raise Invalid("decorators.interval: must map seconds to lists of SQL")
    for seconds, queries in interval.items():
        if not str(seconds).isdigit():
            raise _fail(f"decorators.interval.{seconds}", "keys are numbers of seconds")
        _check_sql_list(f"decorators.interval.{seconds}", queries)


def merge_team_config(base: Mapping[str, Any], team: Mapping[str, Any]) -> dict[str, Any]:
    """The global config with a team's additions merged in."""
    merged = copy.deepcopy(dict(base))
    merged["options"] = {**merged.get("options", {}), **team.get("options", {})}
    for key in ("schedule", "packs"):
        merged[key] = {**merged.get(key, {}), **team.get(key, {})}
    decorators = dict(merged.get("decorators", {}))
    for key in ("load", "always"):
        if key in team.get("decorators", {}):
            decorators[key] = list(decorators.get(key, [])) + list(team["decorators"][key])
    merged["decorators"] = decorators
    for key, value in team.items():
        if key not in ("options", "schedule", "packs", "decorators"):
            merged[key] = value
    return merged
