"""The `cluster` fixture: three `fleetwatch serve` processes on one PostgreSQL and one Redis."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster
from tests.services import PostgresServer

_databases = itertools.count()


@pytest.fixture
def cluster(pg_server: PostgresServer, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Three started nodes on a fresh database and an emptied Redis; stopped after the test."""
    nodes = Cluster(
        database_url=pg_server.create_database(f"cluster{next(_databases)}"),
        redis_url=redis_url,
        directory=tmp_path / "cluster",
        # webhook receivers listen on loopback, which webhooks may call only when allowed
        settings={"OUTBOUND_ALLOW": "127.0.0.0/8,::1/128"},
    )
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()
