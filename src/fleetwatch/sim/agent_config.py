"""The osquery config JSON an agent receives: options, schedule, packs and decorators.

Parsed like osquery's config parsers: an entry that cannot be used is skipped with a
warning; it does not void the rest of the config.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleetwatch.sim.profile import OSQUERY_VERSION

#: osquery rejects configs larger than this (1 MiB up to 5.23.1).
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScheduledQuery:
    """One scheduled query, from `schedule` or from a pack."""

    query_name: str
    sql: str
    interval: int
    snapshot: bool = False
    removed: bool = True
    platform: str = ""
    version: str = ""
    shard: int = 0
    pack: str | None = None
    #: SQL that must each return a row for the pack to run (pack `discovery`).
    discovery: tuple[str, ...] = ()

    def log_name(self, delimiter: str) -> str:
        """The `name` in result logs: pack queries are `pack<d><pack><d><query>`."""
        if self.pack is None:
            return self.query_name
        return f"pack{delimiter}{self.pack}{delimiter}{self.query_name}"


@dataclass(frozen=True, slots=True)
class Decorators:
    """Decorator queries: `load` (at config load), `always` (before each scheduled query),
    `interval` (every N seconds)."""

    load: tuple[str, ...] = ()
    always: tuple[str, ...] = ()
    interval: tuple[tuple[int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """A parsed config; `hash` identifies its content (osquery_info.config_hash)."""

    options: Mapping[str, object]
    schedule: tuple[ScheduledQuery, ...]
    decorators: Decorators
    hash: str
    warnings: tuple[str, ...] = field(default=())


class ConfigRejected(ValueError):
    """The whole config is unusable (not an object, too large)."""


def parse_config(doc: object, raw_size: int, raw: bytes = b"") -> AgentConfig:
    """Parse a config document (already JSON-decoded) of `raw_size` bytes."""
    if raw_size > MAX_CONFIG_BYTES:
        raise ConfigRejected(f"the config size exceeds the limit ({raw_size} bytes)")
    if not isinstance(doc, dict):
        raise ConfigRejected("the config must be a JSON object")
    warnings: list[str] = []
    options = doc.get("options", {})
    if not isinstance(options, dict):
        warnings.append("options is not an object; ignored")
        options = {}
    schedule: list[ScheduledQuery] = []
    raw_schedule = doc.get("schedule", {})
    if isinstance(raw_schedule, dict):
        for name, entry in raw_schedule.items():
            query = _scheduled(str(name), entry, None, (), warnings)
            if query is not None:
                schedule.append(query)
    elif raw_schedule is not None:
        warnings.append("schedule is not an object; ignored")
    packs = doc.get("packs", {})
    if isinstance(packs, dict):
        for pack_name, pack in packs.items():
            schedule.extend(_pack(str(pack_name), pack, warnings))
    decorators = _decorators(doc.get("decorators"), warnings)
    digest = hashlib.sha1(raw, usedforsecurity=False).hexdigest() if raw else ""
    return AgentConfig(
        options=options,
        schedule=tuple(schedule),
        decorators=decorators,
        hash=digest,
        warnings=tuple(warnings),
    )


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _as_bool(value: object, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int):
        return value != 0
    return default


def _scheduled(
    name: str,
    entry: object,
    pack: str | None,
    discovery: tuple[str, ...],
    warnings: list[str],
) -> ScheduledQuery | None:
    where = f"pack {pack!r} query {name!r}" if pack else f"scheduled query {name!r}"
    if not isinstance(entry, dict):
        warnings.append(f"{where} is not an object; skipped")
        return None
    sql = entry.get("query")
    if not isinstance(sql, str) or not sql.strip():
        warnings.append(f"{where} has no query; skipped")
        return None
    interval = _as_int(entry.get("interval", 3600))
    if interval is None or interval <= 0:
        warnings.append(f"{where} has no positive interval; skipped")
        return None
    shard = _as_int(entry.get("shard", 0)) or 0
    return ScheduledQuery(
        query_name=name,
        sql=sql,
        interval=interval,
        snapshot=_as_bool(entry.get("snapshot"), False),
        removed=_as_bool(entry.get("removed"), True),
        platform=str(entry.get("platform") or ""),
        version=str(entry.get("version") or ""),
        shard=shard,
        pack=pack,
        discovery=discovery,
    )


def _pack(name: str, pack: object, warnings: list[str]) -> list[ScheduledQuery]:
    if not isinstance(pack, dict):
        warnings.append(f"pack {name!r} is not an inline object; skipped")
        return []
    raw_discovery = pack.get("discovery", [])
    discovery = (
        tuple(q for q in raw_discovery if isinstance(q, str))
        if isinstance(raw_discovery, list)
        else ()
    )
    queries = pack.get("queries", {})
    if not isinstance(queries, dict):
        warnings.append(f"pack {name!r} has no queries object; skipped")
        return []
    out = []
    for query_name, entry in queries.items():
        if isinstance(entry, dict):
            # Pack-level platform/version/shard apply unless the query sets its own.
            entry = {**{k: pack[k] for k in ("platform", "version", "shard") if k in pack}, **entry}
        query = _scheduled(str(query_name), entry, name, discovery, warnings)
        if query is not None:
            out.append(query)
    return out


def _decorators(raw: object, warnings: list[str]) -> Decorators:
    if raw is None:
        return Decorators()
    if not isinstance(raw, dict):
        warnings.append("decorators is not an object; ignored")
        return Decorators()

    def strings(value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            return ()
        return tuple(v for v in value if isinstance(v, str) and v.strip())

    interval: list[tuple[int, tuple[str, ...]]] = []
    raw_interval = raw.get("interval", {})
    if isinstance(raw_interval, dict):
        for seconds, queries in raw_interval.items():
            every = _as_int(seconds)
            if every is None or every <= 0:
                warnings.append(f"decorator interval {seconds!r} is not a positive number")
                continue
            interval.append((every, strings(queries)))
    return Decorators(
        load=strings(raw.get("load")),
        always=strings(raw.get("always")),
        interval=tuple(sorted(interval)),
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def applies_to(query: ScheduledQuery, platforms: frozenset[str], shard_value: int) -> bool:
    """Whether a host runs this query: platform list, minimum osquery version, shard."""
    if query.platform:
        wanted = {p.strip().lower() for p in query.platform.split(",") if p.strip()}
        if wanted and not wanted & platforms:
            return False
    if query.version and _version_tuple(query.version) > _version_tuple(OSQUERY_VERSION):
        return False
    if 0 < query.shard < 100 and shard_value >= query.shard:
        return False
    return True


class ConfigCache:
    """Parsed configs by content: 10,000 hosts fetching the same config parse it once."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._parsed: dict[bytes, AgentConfig] = {}

    def parse(self, doc: object, raw: bytes) -> AgentConfig:
        """`parse_config(doc, len(raw), raw)`, reusing an earlier parse of the same bytes."""
        key = hashlib.sha1(raw, usedforsecurity=False).digest()
        config = self._parsed.get(key)
        if config is None:
            config = parse_config(doc, len(raw), raw)
            if len(self._parsed) >= self.size:
                self._parsed.pop(next(iter(self._parsed)))
            self._parsed[key] = config
        return config
