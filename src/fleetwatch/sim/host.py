"""One simulated osquery agent: enroll, config, distributed queries, scheduled queries, logs.

It follows osquery's plugins (reference: osquery-remote-api.md): each runs its own loop, as
osquery runs each on its own thread with its own connection:

- enroll when a plugin needs a node key, retrying with min(step^2, 600) s sleeps;
- config at start and every `config_refresh` (`config_accelerated_refresh` while failing),
  3 attempts sleeping 1 s, 4 s; its `options` change the runtime flags;
- distributed: read, run discovery then queries (serially), one write with queries,
  statuses, messages and stats; 3 attempts per request; results kept until a write succeeds;
  sleep `distributed_interval`, or 5 s while accelerated;
- logger: every `logger_tls_period`, send up to `logger_tls_max_lines` buffered lines (results
  and statuses in separate POSTs), no in-call retry, backoff period*n^2 after failures;
- scheduler: queries on their (splayed) intervals, differential results in event format.

`node_invalid` drops the key; the next request enrolls again. No server reply, however
broken, ends a loop: an unexpected error is logged and the loop restarts.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fleetwatch.sim.agent_config import (
    AgentConfig,
    ConfigCache,
    ConfigRejected,
    ScheduledQuery,
    applies_to,
)
from fleetwatch.sim.churn import Churn, Presence, query_delay, query_failure
from fleetwatch.sim.distributed import Answer, Answers, Work, WorkRejected, accept_work
from fleetwatch.sim.engine import Engines, QueryResult
from fleetwatch.sim.flags import AgentFlags
from fleetwatch.sim.host_logger import HostLogger
from fleetwatch.sim.host_scheduler import HostScheduler
from fleetwatch.sim.inventory import AgentFacts, HostInventory
from fleetwatch.sim.logs import (
    ERROR,
    INFO,
    WARNING,
    LogBuffer,
)
from fleetwatch.sim.profile import OSQUERY_VERSION, HostProfile
from fleetwatch.sim.protocol import (
    RequestFailed,
    attempt_delay,
    enroll_delay,
    enrolled_key,
    interpret,
)
from fleetwatch.sim.scheduler import Schedule
from fleetwatch.sim.seeding import mix
from fleetwatch.sim.stats import HostStats, ReceivedQuery, SentResult
from fleetwatch.sim.transport import Connection, Server, TransportError

log = logging.getLogger("fleetwatch.sim")


class SimHost(HostScheduler, HostLogger):
    """A simulated osquery agent. `await host.run()` until cancelled."""

    def __init__(
        self,
        profile: HostProfile,
        server: Server,
        enroll_secret: str,
        *,
        flags: AgentFlags | None = None,
        churn: Churn | None = None,
        engines: Engines | None = None,
        configs: ConfigCache | None = None,
        history: int = 100,
        keepalive: float = 60.0,
        aux_keepalive: float | None = None,
    ) -> None:
        self.profile = profile
        self.server = server
        self.enroll_secret = enroll_secret
        self.flags = flags or AgentFlags()
        self.churn = churn or Churn()
        self.engines = engines or Engines()
        self.configs = configs or ConfigCache()
        self.facts = AgentFacts(flags=self.flags.as_strings())
        self.inventory = HostInventory(profile, self.facts, self.churn.process_period)
        self.presence = Presence(profile.seed, self.churn, origin=time.time())
        self.stats = HostStats()
        self.node_key: str | None = None
        self.config: AgentConfig | None = None
        self.schedule = Schedule()
        self.logs = LogBuffer(self.flags.buffered_log_max)
        self.pending = Answers()
        self.accelerate_until = 0.0
        self.received_queries: deque[ReceivedQuery] = deque(maxlen=history)
        self.results_sent: deque[SentResult] = deque(maxlen=history)
        aux = keepalive if aux_keepalive is None else aux_keepalive
        gz = self.flags.tls_accept_gzip
        self.connections = {
            "distributed": Connection(server, keepalive, gz),
            "config": Connection(server, aux, gz),
            "logger": Connection(server, aux, gz),
        }
        self._online = asyncio.Event()
        self._online.set()
        self._enroll_lock = asyncio.Lock()
        self._schedule_changed = asyncio.Event()
        self._decorations: dict[str, dict[str, str]] = {"load": {}, "always": {}, "interval": {}}
        self._pack_active: dict[str, tuple[float, bool]] = {}
        self._occurrences = 0
        self._shard = mix(profile.uuid, "shard") % 100

    # -- identity ---------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        return self.profile.hostname

    @property
    def host_identifier(self) -> str:
        """What the agent sends as `host_identifier` / `hostIdentifier` (--host_identifier)."""
        method = self.flags.host_identifier
        if method == "uuid":
            return self.profile.uuid
        if method in ("instance", "ephemeral"):
            return self.profile.instance_id
        return self.profile.hostname

    @property
    def online(self) -> bool:
        return self._online.is_set()

    @property
    def enrolled(self) -> bool:
        return self.node_key is not None

    def query(self, sql: str) -> QueryResult:
        """Run SQL against this host's tables now (what a distributed query would return)."""
        return self.engines.query(self.inventory, sql, time.time())

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Start like osqueryd: enroll and load the config, then run every plugin loop."""
        self._status(INFO, "init.cpp", 676, f"osqueryd started [version={OSQUERY_VERSION}]")
        try:
            await self._guard("config", self._fetch_config)
            loops: list[Callable[[], Awaitable[Any]]] = [
                self._distributed_loop,
                self._logger_loop,
                self._schedule_loop,
            ]
            if self.flags.config_refresh > 0:
                loops.append(self._config_loop)
            if not self.presence.always_online:
                loops.append(self._presence_loop)
            async with asyncio.TaskGroup() as group:
                for loop in loops:
                    group.create_task(self._guard(loop.__name__.strip("_"), loop))
        finally:
            self.close()

    def close(self) -> None:
        """Drop every connection."""
        for connection in self.connections.values():
            connection.close()

    async def _guard(self, name: str, loop: Callable[[], Awaitable[Any]]) -> None:
        """Run a loop; an unexpected exception is logged and the loop starts over."""
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.loop_crashes += 1
                log.exception("simulated host %s: %s loop failed; restarting", self.hostname, name)
                await asyncio.sleep(1.0)

    # -- requests ---------------------------------------------------------------------------

    async def _post(
        self, channel: str, path: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()
    ) -> bytes:
        if not self._online.is_set():
            await self._online.wait()
        response = await self.connections[channel].post(
            path, body, headers=headers, timeout=self.flags.request_timeout
        )
        return response.body

    async def _call(
        self,
        kind: str,
        channel: str,
        path: str,
        make_body: Callable[[str], bytes],
        attempts: int,
        compress: bool = False,
    ) -> tuple[dict[str, Any], bytes] | None:
        """osquery's TLSRequestHelper::go: up to `attempts` tries sleeping i*i s between
        them, each with the current node key (enrolling first if there is none)."""
        attempts = max(1, attempts)
        for attempt in range(1, attempts + 1):
            key = await self._node_key(channel)
            if key is None:
                self.stats.failed(kind, "no node key (enrollment failed)")
            else:
                body = make_body(key)
                headers: tuple[tuple[str, str], ...] = (("Authorization", f"NodeKey {key}"),)
                if compress:
                    body = gzip.compress(body, compresslevel=6)
                    headers += (("Content-Encoding", "gzip"),)
                try:
                    self.stats.requests[kind] += 1
                    raw = await self._post(channel, path, body, headers)
                    return interpret(raw), raw
                except TransportError as exc:
                    self.stats.failed(kind, str(exc))
                except RequestFailed as exc:
                    self.stats.failed(kind, str(exc))
                    if exc.node_invalid:
                        self._forget_key(key)
            if attempt < attempts:
                await asyncio.sleep(attempt_delay(attempt, self.flags.retry_unit))
        return None

    def _forget_key(self, key: str) -> None:
        self.stats.node_invalid += 1
        if self.flags.disable_reenrollment:
            return
        if self.node_key == key:
            self.node_key = None

    async def _node_key(self, channel: str) -> str | None:
        if self.node_key is not None:
            return self.node_key
        async with self._enroll_lock:
            if self.node_key is None:
                await self._enroll(channel)
            return self.node_key

    def enroll_body(self) -> bytes:
        """The enroll request: secret, identifier, platform type and host_details."""
        details: dict[str, dict[str, str]] = {}
        for table in ("os_version", "osquery_info", "system_info", "platform_info"):
            result = self.query(f"SELECT * FROM {table} LIMIT 1")
            if result.rows:
                details[table] = result.rows[0]
        return orjson.dumps(
            {
                "enroll_secret": self.enroll_secret,
                "host_identifier": self.host_identifier,
                "platform_type": self.profile.platform.platform_type,
                "host_details": details,
            }
        )

    async def _enroll(self, channel: str) -> None:
        flags = self.flags
        step = 0
        while True:
            step += 1
            try:
                self.stats.requests["enroll"] += 1
                raw = await self._post(channel, flags.enroll_tls_endpoint, self.enroll_body())
                self.node_key = enrolled_key(raw)
                self.stats.enrollments += 1
                return
            except (TransportError, RequestFailed) as exc:
                self.stats.failed("enroll", str(exc))
                self._status(
                    WARNING,
                    "tls_enroll.cpp",
                    95,
                    f"Failed enrollment request to {self.server.url}"
                    f"{flags.enroll_tls_endpoint} ({exc}) retrying...",
                )
            if flags.tls_enroll_max_attempts and step >= flags.tls_enroll_max_attempts:
                return
            await asyncio.sleep(enroll_delay(step, flags.tls_enroll_max_interval, flags.retry_unit))

    # -- config -----------------------------------------------------------------------------

    async def _fetch_config(self) -> bool:
        flags = self.flags
        reply = await self._call(
            "config",
            "config",
            flags.config_tls_endpoint,
            lambda key: orjson.dumps({"node_key": key}),
            flags.config_tls_max_attempts,
        )
        if reply is None:
            self._status(WARNING, "config.cpp", 375, "Error retrieving config from TLS plugin")
            return False
        doc, raw = reply
        try:
            config = self.configs.parse(doc, raw)
        except ConfigRejected as exc:
            self.stats.failed("config", str(exc))
            self._status(ERROR, "config.cpp", 389, f"Error parsing the config: {exc}")
            return False
        self.apply_config(config)
        return True

    def apply_config(self, config: AgentConfig) -> None:
        """Use a config: options change runtime flags; schedule, packs, decorators replace the
        old ones (state is kept for unchanged scheduled queries)."""
        first = self.config is None or self.config.hash != config.hash
        flags, ignored = self.flags.with_options(config.options)
        self.flags = flags
        self.logs.limit = max(1, flags.buffered_log_max)
        self.facts.update(config_hash=config.hash, flags=flags.as_strings())
        self.stats.config_loads += 1
        if first:
            for name in ignored:
                self._status(WARNING, "options.cpp", 71, f"Cannot set option {name} from config")
            for warning in config.warnings:
                self._status(WARNING, "config.cpp", 512, warning)
        platforms = self.profile.platform.osquery_platforms
        queries: dict[str, ScheduledQuery] = {}
        for query in config.schedule:
            if applies_to(query, platforms, self._shard):
                queries[query.log_name(flags.pack_delimiter)] = query
        now = time.time()
        self.schedule.replace(queries, flags.schedule_splay_percent, self.profile.seed, now)
        self.config = config
        if first:
            self._pack_active.clear()
            self._decorations["load"] = self._decorate(config.decorators.load)
            self._decorations["interval"] = {}
            self._decorations["always"] = {}
        self._schedule_changed.set()

    async def _config_loop(self) -> None:
        ok = self.config is not None
        while True:
            await asyncio.sleep(
                self.flags.config_refresh if ok else self.flags.config_accelerated_refresh
            )
            ok = await self._fetch_config()

    # -- distributed ------------------------------------------------------------------------

    def distributed_pause(self, now: float) -> float:
        """Seconds until the next read: 5 while accelerated, else distributed_interval."""
        if now < self.accelerate_until:
            return self.flags.accelerated_interval
        return self.flags.distributed_interval

    async def _distributed_loop(self) -> None:
        while True:
            if not self.flags.disable_distributed:
                await self.distributed_cycle()
            await asyncio.sleep(self.distributed_pause(time.time()))

    async def distributed_cycle(self) -> None:
        """One read, the queries it asked for, and one write of every unsent result."""
        flags = self.flags
        reply = await self._call(
            "distributed_read",
            "distributed",
            flags.distributed_tls_read_endpoint,
            lambda key: orjson.dumps({"node_key": key}),
            flags.distributed_tls_max_attempts,
        )
        if reply is not None:
            try:
                work = accept_work(reply[0])
                if work.accelerate is not None:
                    self.accelerate_until = time.time() + work.accelerate
                await self._answer(work)
            except WorkRejected as exc:
                self.stats.failed("distributed_read", str(exc))
                self._status(WARNING, "distributed.cpp", 228, str(exc))
        if not self.pending:
            return
        written = await self._call(
            "distributed_write",
            "distributed",
            flags.distributed_tls_write_endpoint,
            self.pending.body,
            flags.distributed_tls_max_attempts,
        )
        if written is not None:
            now = time.time()
            for name, answer in self.pending.clear().items():
                self.stats.queries_answered += 1
                self.results_sent.append(
                    SentResult(name, answer.status, answer.rows, answer.message, now)
                )

    async def _answer(self, work: Work) -> None:
        now = time.time()
        for name, sql in work.queries.items():
            self.received_queries.append(ReceivedQuery(name, sql, work.discovery.get(name), now))
        passed: set[str] = set()
        for name, sql in work.discovery.items():
            found = self.query(sql)
            if not found.ok:
                raise WorkRejected(f"Distributed discovery query has an SQL error: {found.error}")
            if found.rows:
                passed.add(name)
        for name, sql in work.queries.items():
            if name in work.discovery and name not in passed:
                continue  # osquery 5.8+: skipped queries are absent from the write
            self.pending.add(name, await self._run_distributed(name, sql))

    async def _run_distributed(self, name: str, sql: str) -> Answer:
        occurrence = self._occurrences
        self._occurrences += 1
        delay = query_delay(self.profile.seed, self.churn, name, occurrence)
        if delay:
            await asyncio.sleep(delay)
        failure = query_failure(self.profile.seed, self.churn, name, occurrence)
        if failure is not None:
            return Answer([], 1, failure, {})
        result = self.query(sql)
        wall = result.wall_time_ms + int(delay * 1000)
        stats = {
            "wall_time_ms": wall,
            "user_time": wall // 2,
            "system_time": wall // 4,
            "memory": 0,
        }
        if result.ok:
            return Answer(result.rows, 0, "", stats)
        return Answer([], 1, result.error or "query failed", stats)

    # -- presence ---------------------------------------------------------------------------

    async def _presence_loop(self) -> None:
        while True:
            now = time.time()
            self.set_online(self.presence.online(now))
            change = self.presence.next_change(now)
            if change is None:
                return
            await asyncio.sleep(max(0.01, change - now))

    def set_online(self, online: bool) -> None:
        """Take the host off the network (its requests wait) or bring it back."""
        if online:
            self._online.set()
        elif self._online.is_set():
            self._online.clear()
            for connection in self.connections.values():
                if not connection.busy:
                    connection.close()
