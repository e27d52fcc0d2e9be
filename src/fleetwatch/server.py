"""Running the app under uvicorn, with TLS when asked (self-signed or given cert and key)."""

from __future__ import annotations

import gc
import resource
from typing import Any

import uvicorn
from fastapi import FastAPI

from fleetwatch.app import create_app
from fleetwatch.config import Settings
from fleetwatch.ops.heap import HeapTrimmer
from fleetwatch.ops.logs import configure_logging
from fleetwatch.osquery.protocol import checked_agent_protocol
from fleetwatch.tls import ensure_self_signed


def uvicorn_config(settings: Settings, app: Any = None) -> uvicorn.Config:
    """The uvicorn configuration for these settings (TLS files made if self-signed), serving
    `app` (default: the app made from the settings here)."""
    try:
        # uvicorn internals it needs are checked first: a changed uvicorn stops start-up
        protocol = checked_agent_protocol()
    except RuntimeError as exc:
        raise SystemExit(f"fleetwatch: {exc}") from None
    ssl: dict[str, str] = {}
    if settings.tls_self_signed:
        cert, key = ensure_self_signed(settings.data_dir, settings.host)
        print(f"fleetwatch: self-signed certificate for osquery --tls_server_certs: {cert}")
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    elif settings.tls_cert is not None:
        if settings.tls_key is None:
            raise SystemExit("fleetwatch: --tls-cert needs --tls-key")
        ssl = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    return uvicorn.Config(
        create_app(settings) if app is None else app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Logging is fleetwatch's (JSON lines, redacted; see ops/logs.py), not uvicorn's own;
        # the access log is written by the request middleware, with the request id.
        log_config=None,
        access_log=False,
        # osquery keeps connections alive; long-polls hold them up to distributed_hold.
        timeout_keep_alive=75,
        proxy_headers=True,
        # A sized response (every agent reply) in one socket write instead of two, and
        # agents' POSTs served in the protocol itself (fleetwatch/osquery/protocol.py).
        http=protocol,
        **ssl,  # type: ignore[arg-type]
    )


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit and return it.

    Every long-polling host holds a socket for up to --distributed-hold seconds, so a fleet
    of thousands needs thousands of descriptors; the usual soft limit of 1024 would make
    accept() and SQLite's own file opens fail long before that.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tune_gc() -> None:
    """Keep the collector's pauses out of the request path of a long-running server.

    What start-up built (services, every host's state, the label and task registries) lives
    as long as the process: frozen, the collector stops walking it on every full collection.
    Young collections run less often too: each is cheap, but a burst of requests allocates
    fast enough to trigger hundreds a second at the default threshold.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


#: Allocations (minus deallocations) between young collections (CPython's default is 700).
GC_THRESHOLD = 20_000


def tune_memory() -> None:
    """What a long-running server process does once its services are up: the collector
    tuned (`tune_gc`) and the C heap's free pages handed back every half minute
    (fleetwatch.ops.heap: without it RSS keeps climbing in a soak, the Python heap flat)."""
    tune_gc()
    HEAP_TRIMMER.start()  # once per process (a second call finds it started)


#: The process's heap trimmer (started by `tune_memory`).
HEAP_TRIMMER = HeapTrimmer()


def run_server(settings: Settings) -> None:
    """Serve until interrupted."""
    configure_logging(settings.log_level, settings.log_format)
    raise_open_file_limit()
    if settings.workers > 1:
        from fleetwatch.workers import run_workers

        run_workers(settings, uvicorn_config, tune_memory)
        return
    config = uvicorn_config(settings)
    app = config.app
    if isinstance(app, FastAPI):
        app.state.tune_gc = tune_memory  # run by the app once its services are up
    uvicorn.Server(config).run()
