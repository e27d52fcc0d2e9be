"""Two in-process nodes on one PostgreSQL database and one Redis (a cluster on loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from fleetwatch.config import Settings
from tests.conftest import login
from tests.server import RunningServer, cluster_node_settings, running_server
from tests.services import PostgresServer

SECRET = "test-enroll-secret"


def node_settings(database_url: str, redis_url: str, data_dir: Path) -> Settings:
    # webhook receivers listen on loopback, which webhooks may call only when allowed
    return cluster_node_settings(
        database_url, redis_url, data_dir, distributed_hold=0.0, outbound_allow="127.0.0.0/8"
    )


@contextmanager
def two_nodes(
    pg_server: PostgresServer, redis_url: str, directory: Path
) -> Iterator[tuple[RunningServer, RunningServer, httpx.Client, httpx.Client]]:
    """Node A (started first: it holds the cluster's leases) and node B, each with an
    admin's API client."""
    url = pg_server.create_database(f"policies_nodes_{time.monotonic_ns()}")
    with (
        running_server(node_settings(url, redis_url, directory / "a")) as a,
        running_server(node_settings(url, redis_url, directory / "b")) as b,
        httpx.Client(base_url=a.url, timeout=30) as api_a,
        httpx.Client(base_url=b.url, timeout=30) as api_b,
    ):
        for node, api in ((a, api_a), (b, api_b)):
            api.headers["Authorization"] = f"Bearer {login(node)}"
        yield a, b, api_a, api_b
