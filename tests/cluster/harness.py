"""A cluster of real `fleetwatch serve` processes for tests: N nodes on loopback sharing one
PostgreSQL database and one Redis, as deployed (docs/deploy.md), minus the load balancer.

Each node is `python -m fleetwatch serve` on a free port, configured through FLEETWATCH_*
variables, its output in a log file (printed when a node fails to start). A node can be
killed with SIGKILL (a crash: no clean shutdown, its leases lapse) and started again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.services import free_port

ENROLL_SECRET = "cluster-enroll-secret"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-1"
#: Seconds a node may take to answer /healthz (all nodes start at once on 2 shared cores).
START_TIMEOUT = 90.0


@dataclass
class ClusterNode:
    """One `fleetwatch serve` process of a `Cluster`."""

    number: int
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "node.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """What the node printed (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Cluster:
    """N nodes on one database and one Redis; `start`, `kill`, `restart`, `stop`."""

    database_url: str
    redis_url: str
    directory: Path
    size: int = 3
    #: Extra FLEETWATCH_* settings for every node (name without the prefix -> value).
    settings: Mapping[str, str] = field(default_factory=dict)
    nodes: list[ClusterNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        for number in range(1, self.size + 1):
            directory = self.directory / f"node{number}"
            directory.mkdir(parents=True, exist_ok=True)
            self.nodes.append(ClusterNode(number, free_port(), directory))

    def node(self, number: int) -> ClusterNode:
        """Node `number`, counted from 1."""
        return self.nodes[number - 1]

    def _environment(self, node: ClusterNode) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
        values = {
            "HOST": "127.0.0.1",
            "PORT": str(node.port),
            "DATA_DIR": str(node.directory / "data"),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "ENROLL_SECRET": ENROLL_SECRET,
            "ADMIN_EMAIL": ADMIN_EMAIL,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "DISTRIBUTED_HOLD": "1",
            "SEEN_FLUSH_INTERVAL": "0.2",
            "CLUSTER_LEASE_TTL": "1.5",
            "LOG_LEVEL": "warning",
            **self.settings,
        }
        env.update({f"FLEETWATCH_{k}": v for k, v in values.items()})
        return env

    def launch(self, number: int) -> None:
        """Start node `number`'s process (without waiting for it to be ready)."""
        node = self.node(number)
        if node.running:
            raise RuntimeError(f"node {number} is already running")
        with node.log_path.open("ab") as log:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "fleetwatch", "serve"],
                env=self._environment(node),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=node.directory,
            )

    def wait_ready(self, number: int, timeout: float = START_TIMEOUT) -> None:
        """Block until node `number` answers /healthz with 200."""
        node = self.node(number)
        deadline = time.monotonic() + timeout
        while True:
            if not node.running:
                raise RuntimeError(f"node {number} exited while starting:\n{node.log_text()}")
            try:
                if httpx.get(f"{node.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {number} not ready in {timeout} s:\n{node.log_text()}")
            time.sleep(0.1)

    def start(self) -> None:
        """Start every node at once (they migrate the shared database together) and wait."""
        for node in self.nodes:
            self.launch(node.number)
        for node in self.nodes:
            self.wait_ready(node.number)

    def kill(self, number: int) -> None:
        """SIGKILL node `number`: no clean shutdown, as a crash."""
        node = self.node(number)
        if node.process is not None:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGKILL)
            node.process.wait()
        node.process = None

    def restart(self, number: int) -> None:
        """Kill node `number` if it runs, start it again on the same port, wait until ready."""
        self.kill(number)
        self.launch(number)
        self.wait_ready(number)

    def stop(self) -> None:
        """Stop every node: SIGTERM (a clean shutdown), SIGKILL after 20 s."""
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
                node.process = None

    def login(self, number: int = 1) -> str:
        """A bearer token of the admin, from node `number` (valid on every node)."""
        reply = httpx.post(
            f"{self.node(number).url}/api/v1/fleet/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        )
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["token"]
        return token
