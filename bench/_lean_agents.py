"""A lean osquery fleet for server benchmarks: thousands of hosts in one process.

Each host is one keep-alive HTTP/1.1 connection, an asyncio Protocol with one callback per
response and requests built as bytes, that does on the wire what osquery's TLS plugins do
(docs: /work/shared/reference/osquery-remote-api.md) and nothing else:

- enroll: `enroll_secret`, `host_identifier`, `platform_type` "9" and `host_details`, every
  value a string, no node key (§1.1); then the config once, for the pushed
  `distributed_interval` (§1.2);
- distributed/read with `{"node_key": ...}` and `Authorization: NodeKey ...` (5.23+); every
  query offered is answered (its `discovery` query, `SELECT 1`, counts as returning a row) in
  one distributed/write with `queries`, `statuses` (integers), `messages` and `stats`, rows of
  strings; nothing offered, no write; then the next read after `distributed_interval`, or 5 s
  while an integer `accelerate` lasts (§0.2, §1.4, §1.5);
- `node_invalid: true` drops the key: the host enrolls again about 1 s later and repeats the
  request with its new key (§1.7); a reply with `error` or that is not JSON fails the
  attempt, retried after 1 s then 4 s, then the interval (§0.1), a failed enroll after
  min(n², 600) s, for good (§1.1); a request not answered
  within 16 s is abandoned and its socket closed, as osquery's client does (§0.1).

No SQL runs: answers are canned rows (the detail queries get rows shaped like the real tables,
a live query `fleet_distributed_query_<id>` gets `hostname` and `uuid`; every `fail_every`-th
host answers live queries with status 1 and osquery's message instead). For every live query
the fleet records when the read that offered it was answered and when the write's reply came.

The fleet runs in its own process (`agent_process`), commanded over a pipe, so its CPU (from
/proc) is its own.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

import orjson

from bench._lean_wire import (
    ACCELERATE_INTERVAL_S,
    CONFIG_PATH,
    DETAIL_PREFIX,
    ENROLL_PATH,
    LIVE_PREFIX,
    MAX_ATTEMPTS,
    READ_PATH,
    REQUEST_TIMEOUT_S,
    WRITE_PATH,
    ResponseParser,
    build_request,
    enroll_body,
    offered_queries,
    write_body,
)
from fleetwatch.sim.protocol import RequestFailed, enrolled_key, interpret

#: `--tls_enroll_max_interval`: the longest sleep between two failed enrolls.
ENROLL_MAX_INTERVAL_S = 600.0
ENROLL, CONFIG, READ, WRITE = "enroll", "config", "read", "write"


# --- the fleet ----------------------------------------------------------------------------


@dataclass
class LiveAnswer:
    """One host's answer to one live query: when the offering read and the write returned."""

    index: int
    read_at: float
    replied_at: float = 0.0


@dataclass
class FleetConfig:
    """What the fleet needs to know about the server."""

    port: int
    secret: str
    fail_every: int = 0


@dataclass
class Fleet:
    """The hosts of one process and what they saw."""

    config: FleetConfig
    loop: asyncio.AbstractEventLoop
    hosts: list[Host] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    #: Live query name -> each host's answer (read and write-reply times).
    live: dict[str, list[LiveAnswer]] = field(default_factory=dict)
    #: Every query name offered that is not a live query's, and how often.
    other_names: Counter[str] = field(default_factory=Counter)
    last_other_offer: float = 0.0
    running: bool = True

    def __post_init__(self) -> None:
        self.host_header = f"127.0.0.1:{self.config.port}".encode()

    def error(self, message: str) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < 20:
            self.errors.append(message)

    def status(self) -> dict[str, Any]:
        now = time.time()
        return {
            "time": now,
            "hosts": len(self.hosts),
            "connected": sum(h.transport is not None for h in self.hosts),
            "enrolled": sum(h.node_key is not None for h in self.hosts),
            "details_done": sum(h.details_done for h in self.hosts),
            "other_query_age": now - self.last_other_offer if self.last_other_offer else None,
            "counts": dict(self.counts),
            "errors": list(self.errors),
            "live_names": sorted(self.live),
            "other_names": dict(self.other_names),
        }

    def answers(self, name: str) -> list[tuple[int, float, float]]:
        return [(a.index, a.read_at, a.replied_at) for a in self.live.get(name, [])]

    async def start(self, hosts: int, rate: float) -> None:
        """Start `hosts` hosts, `rate` a second (their connections opened in turn)."""
        first = len(self.hosts)
        started = time.monotonic()
        for n in range(hosts):
            if not self.running:
                return
            due = started + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            host = Host(self, first + n)
            self.hosts.append(host)
            host.connect()

    def sweep(self) -> None:
        """Abandon requests older than osquery's 16 s timeout (once a second)."""
        if not self.running:
            return
        limit = time.monotonic() - REQUEST_TIMEOUT_S
        for host in self.hosts:
            if host.in_flight and host.sent_at < limit and host.transport is not None:
                self.counts["timeouts"] += 1
                host.transport.abort()
        self.loop.call_later(1.0, self.sweep)

    def close(self) -> None:
        self.running = False
        for host in self.hosts:
            host.stop()


class Host(asyncio.Protocol):
    """One osquery host: one keep-alive connection, the TLS plugins' request loop."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.node_key: str | None = None
        self.enrolled_once = False
        self.configured = False
        #: What is sent next (or is in flight), and its body (without the node key, which is
        #: added on send: a request repeated after re-enrolling carries the new one).
        self.kind = ENROLL
        self.payload: dict[str, Any] = {}
        #: The request that met node_invalid, repeated once enrolled again.
        self.after_enroll: tuple[str, dict[str, Any]] | None = None
        self.in_flight = False
        self.sent_at = 0.0
        self.attempt = 0
        self.interval = 10  # osquery's documented default until the config says otherwise
        self.accelerate_until = 0.0
        self.details_done = False
        self.timer: asyncio.TimerHandle | None = None
        self.read_request = b""
        #: Live queries in the write in flight, with when their read came back.
        self.live_pending: list[LiveAnswer] = []
        self.fail_live = fleet.config.fail_every > 0 and index % fleet.config.fail_every == 0

    # connection -------------------------------------------------------------------------

    def connect(self) -> None:
        if not self.fleet.running:
            return
        task = self.fleet.loop.create_task(
            self.fleet.loop.create_connection(lambda: self, "127.0.0.1", self.fleet.config.port)
        )
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.fleet.counts["connect_failures"] += 1
            self.fleet.loop.call_later(1.0, self.connect)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.parser = ResponseParser()
        if self.in_flight or self.timer is None:
            self._send()  # first connection, or a request the old connection lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.fleet.running:
            return
        self.fleet.counts["disconnects"] += 1
        self.fleet.loop.call_later(1.0, self.connect)  # a sleeping host's timer stays

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.fleet.loop.call_later(delay, callback)

    # requests ---------------------------------------------------------------------------

    def _send(self) -> None:
        self.timer = None
        if not self.fleet.running:
            return
        self.in_flight = True
        if self.transport is None:
            return  # sent by connection_made
        if self.kind == READ and self.read_request:
            request = self.read_request
        else:
            if self.kind == ENROLL:
                body = enroll_body(self.index, self.fleet.config.secret)
            else:
                body = self.payload | {"node_key": self.node_key}
            request = build_request(
                _PATHS[self.kind],
                self.fleet.host_header,
                orjson.dumps(body),
                None if self.kind == ENROLL else self.node_key,
            )
            if self.kind == READ:
                self.read_request = request
        self.sent_at = time.monotonic()
        self.fleet.counts[self.kind] += 1
        self.transport.write(request)

    def _next(self, kind: str, payload: dict[str, Any], delay: float = 0.0) -> None:
        self.kind, self.payload, self.attempt = kind, payload, 0
        if delay > 0:
            self._later(delay, self._send)
        else:
            self._send()

    def _next_read(self) -> None:
        accelerated = time.time() < self.accelerate_until
        self._next(READ, {}, ACCELERATE_INTERVAL_S if accelerated else float(self.interval))

    def _failed(self, message: str, node_invalid: bool) -> None:
        fleet = self.fleet
        if node_invalid:
            # The key is dropped; the retry enrolls first and repeats the request (§1.7).
            fleet.counts["node_invalid"] += 1
            self.node_key, self.read_request = None, b""
            self.after_enroll = (self.kind, self.payload)
            self.kind, self.payload, self.attempt = ENROLL, {}, 0
            self._later(1.0, self._send)
            return
        fleet.counts[f"{self.kind}_failures"] += 1
        fleet.error(f"{self.kind}: {message}")
        self.attempt += 1
        if self.kind == ENROLL:
            # min(step², --tls_enroll_max_interval) s, retried for good (§1.1)
            self._later(float(min(self.attempt**2, ENROLL_MAX_INTERVAL_S)), self._send)
        elif self.attempt < MAX_ATTEMPTS:
            self._later(float(self.attempt**2), self._send)
        else:
            self.live_pending = []
            self._next_read()  # the distributed loop gives up until the next interval

    # responses --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.parser.feed(data)
        except ValueError as exc:
            self.fleet.error(str(exc))
            if self.transport is not None:
                self.transport.abort()
            return
        for _status, body in responses:
            if not self.in_flight:
                self.fleet.error(f"an answer nobody asked for: {body[:100]!r}")
                continue
            self.in_flight = False
            # osquery ignores the status code and judges the body (reference §0, §5.1).
            try:
                if self.kind == ENROLL:
                    self._enrolled(enrolled_key(body))
                else:
                    self._answered(interpret(body))
            except RequestFailed as exc:
                self._failed(str(exc), exc.node_invalid)
            except ValueError as exc:  # a read reply osquery would reject as a whole
                self._failed(str(exc), False)

    def _enrolled(self, key: str) -> None:
        if self.enrolled_once:
            self.fleet.counts["reenrolled"] += 1
        self.enrolled_once = True
        self.node_key = key
        if self.after_enroll is not None:
            kind, payload = self.after_enroll
            self.after_enroll = None
            self._next(kind, payload)
        elif not self.configured:
            self._next(CONFIG, {})
        else:
            self._next(READ, {})

    def _answered(self, doc: dict[str, Any]) -> None:
        if self.kind == CONFIG:
            self.configured = True
            options = doc.get("options")
            interval = options.get("distributed_interval") if isinstance(options, dict) else None
            if isinstance(interval, int) and not isinstance(interval, bool) and interval > 0:
                self.interval = interval
            self._next(READ, {})
        elif self.kind == READ:
            self._read_answered(doc)
        else:
            now = time.time()
            for answer in self.live_pending:
                answer.replied_at = now
            self.live_pending = []
            if any(n.startswith(DETAIL_PREFIX) for n in self.payload.get("queries", ())):
                self.details_done = True
            self._next_read()

    def _read_answered(self, doc: dict[str, Any]) -> None:
        fleet = self.fleet
        now = time.time()
        accelerate = doc.get("accelerate")
        if isinstance(accelerate, int) and not isinstance(accelerate, bool) and accelerate > 0:
            self.accelerate_until = now + accelerate
        queries = offered_queries(doc)
        if not queries:
            self._next_read()
            return
        self.live_pending = []
        for name in queries:
            if name.startswith(LIVE_PREFIX):
                answer = LiveAnswer(self.index, now)
                fleet.live.setdefault(name, []).append(answer)
                self.live_pending.append(answer)
            else:
                fleet.other_names[name] += 1
                fleet.last_other_offer = now
        assert self.node_key is not None
        payload = write_body(self.node_key, queries, self.index, self.interval, self.fail_live)
        del payload["node_key"]  # added on send, with the key current then
        self._next(WRITE, payload)


_PATHS = {ENROLL: ENROLL_PATH, CONFIG: CONFIG_PATH, READ: READ_PATH, WRITE: WRITE_PATH}


# --- the process ---------------------------------------------------------------------------


def raise_open_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (one socket per host); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def agent_process(pipe: Connection, config: FleetConfig) -> None:
    """Child process: the fleet, commanded over `pipe` until ("stop",).

    Commands: ("start", hosts, rate) -> "started"; ("status",) -> Fleet.status();
    ("answers", name) -> [(index, read_at, replied_at)]; ("bare", port, body, connections,
    warmup, duration, bare_pid) -> bench._http_load.PhaseResult of a closed loop against the
    baseline endpoint; ("stop",) -> "stopped".
    """
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    raise_open_file_limit()
    asyncio.run(_serve_commands(pipe, config))


async def _serve_commands(pipe: Connection, config: FleetConfig) -> None:
    from bench._http_load import post_requests, run_phase

    loop = asyncio.get_running_loop()
    fleet = Fleet(config, loop)
    fleet.sweep()
    done: asyncio.Future[None] = loop.create_future()
    tasks: set[asyncio.Task[Any]] = set()

    def background(coro: Any) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def bare(command: tuple[Any, ...]) -> None:
        _, port, body, connections, warmup, duration, bare_pid = command
        [request] = post_requests("/bare", port, [body])
        result = await run_phase(port, [[request]] * connections, b"{}", warmup, duration, bare_pid)
        result.latencies = []  # not needed, and too big for the pipe at once
        pipe.send(result)

    def on_command(command: tuple[Any, ...]) -> None:
        match command[0]:
            case "start":
                background(fleet.start(command[1], command[2]))
                pipe.send("started")
            case "status":
                pipe.send(fleet.status())
            case "answers":
                pipe.send(fleet.answers(command[1]))
            case "bare":
                background(bare(command))
            case "stop":
                fleet.close()
                pipe.send("stopped")
                if not done.done():
                    done.set_result(None)
            case other:
                pipe.send(f"unknown command {other!r}")

    def receive() -> None:
        # A thread blocks on the pipe (left blocking: answers may exceed its buffer) and
        # hands each command to the loop, which runs it between the hosts' callbacks.
        while True:
            try:
                command = pipe.recv()
            except (EOFError, OSError):
                command = ("stop",)
            loop.call_soon_threadsafe(on_command, command)
            if command[0] == "stop":
                return

    threading.Thread(target=receive, daemon=True).start()
    await done
    await asyncio.sleep(0.2)  # let the transports close
