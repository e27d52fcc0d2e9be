"""`fleetwatch serve --workers N`: N server processes on one port, each a cluster node.

The parent binds the listening socket once and passes it to N spawned workers (uvicorn's
multiprocess supervisor): the kernel spreads new connections over them, and each keeps its
own. Every worker is a full node of a cluster (PostgreSQL for the store, Redis for the bus
that carries wake-ups, changes and leases between them), exactly as nodes on separate
machines are; so the embedded SQLite database, which one process owns, cannot be shared.
The supervisor starts a worker again when it dies (or stops answering its health check)
and stops them all on SIGTERM or SIGINT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn

from fleetwatch.config import Settings


def workers_problem(settings: Settings) -> str | None:
    """Why these settings cannot run several workers (None when they can, or when one)."""
    if settings.workers <= 1:
        return None
    missing = []
    url = settings.database_url or ""
    if not url.startswith("postgresql"):
        missing.append("--database-url postgresql://user:pass@host/db (FLEETWATCH_DATABASE_URL)")
    if not settings.redis_url:
        missing.append("--redis-url redis://host:port (FLEETWATCH_REDIS_URL)")
    if missing:
        store = "the embedded SQLite database" if not url else f"the database {_scheme(url)}"
        return (
            f"--workers {settings.workers} runs {settings.workers} server processes as nodes "
            f"of one cluster, which {store} cannot serve (one process owns it): set "
            + " and ".join(missing)
            + ", or run with --workers 1"
        )
    if settings.metrics_port is not None:
        return (
            f"--metrics-port cannot be used with --workers {settings.workers}: each worker "
            "would bind it; scrape /metrics of each node on the main port (--metrics-token) "
            "or run with --workers 1"
        )
    if settings.log_forward_dir is not None:
        return (
            f"--log-forward-dir cannot be used with --workers {settings.workers}: the "
            "workers would rotate the same files; forward logs to an HTTP destination "
            "instead, or run with --workers 1"
        )
    return None


def _scheme(url: str) -> str:
    return url.split(":", 1)[0] + "://..."


class WorkerApp:
    """The app factory each worker calls once started (picklable: the settings go to the
    worker through the supervisor's pipe, not its environment)."""

    def __init__(self, settings: Settings, tune: Callable[[], None]) -> None:
        self.settings = settings
        self.tune = tune  # fleetwatch.server.tune_memory (pickled by its name)

    def __call__(self) -> Any:
        from fleetwatch.app import create_app
        from fleetwatch.ops.logs import configure_logging

        configure_logging(self.settings.log_level, self.settings.log_format)
        app = create_app(self.settings)
        app.state.tune_gc = self.tune  # as `fleetwatch serve` tunes its one process
        return app


def run_workers(
    settings: Settings,
    uvicorn_config: Callable[..., uvicorn.Config],
    tune: Callable[[], None],
) -> None:
    """Bind the port, start `settings.workers` workers and supervise them until stopped.

    Handed `fleetwatch serve`'s uvicorn configuration and memory tuning (server.py) rather
    than importing them: the server module calls this one."""
    from uvicorn.supervisors import Multiprocess

    problem = workers_problem(settings)
    if problem is not None:
        raise SystemExit(f"fleetwatch: {problem}")
    config = uvicorn_config(settings, app=WorkerApp(settings, tune))
    config.factory = True
    config.workers = settings.workers
    # A worker answers its health check from a thread; a loaded event loop still holds the
    # GIL often enough, and a fleet-wide campaign must not get a busy worker killed.
    config.timeout_worker_healthcheck = 30
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
