"""`fleetwatch serve --workers N`: several server processes on one port, as cluster nodes.

The real command in a subprocess, on PostgreSQL and Redis from the session fixtures, agents
over loopback sockets: every result of a campaign arrives whichever worker each host's
connection landed on; a worker killed with SIGKILL is started again and the fleet keeps
answering; SIGTERM stops the parent and every worker. Without a shared store the command
refuses to start and says what to configure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fleetwatch.config import Settings
from fleetwatch.workers import workers_problem
from tests.agent import Agent
from tests.services import PostgresServer, free_port

SECRET = "workers-enroll-secret"
ADMIN = {"email": "admin@example.com", "password": "admin-password-1"}
HOSTS = 8
SQL = "SELECT hostname FROM system_info"


def _environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
    env.update({f"FLEETWATCH_{k}": v for k, v in values.items()})
    return env


def _workers(parent: int) -> set[int]:
    """The worker processes of the supervisor (multiprocessing's spawned children)."""
    found = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                found.add(int(pid))
    return found


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended (its parent has not reaped it yet)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def two_workers(
    pg_server: PostgresServer, redis_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = _environment(
        HOST="127.0.0.1",
        PORT=str(port),
        DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=pg_server.create_database(f"workers_{time.monotonic_ns()}"),
        REDIS_URL=redis_url,
        ENROLL_SECRET=SECRET,
        ADMIN_EMAIL=ADMIN["email"],
        ADMIN_PASSWORD=ADMIN["password"],
        DISTRIBUTED_HOLD="1",
        SEEN_FLUSH_INTERVAL="0.2",
        CLUSTER_LEASE_TTL="1.5",
        LOG_LEVEL="warning",
    )
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch", "serve", "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("both workers", lambda: len(_workers(proc.pid)) == 2 or proc.poll() is not None)
        _wait("/healthz", lambda: _healthy(url) or proc.poll() is not None, 90)
        assert proc.poll() is None, log.read_text()
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answer_until_done(agents: list[Agent], name: str, timeout: float = 60) -> None:
    """Each agent reads until it is asked `name`, then answers it with its hostname."""
    waiting = list(agents)
    deadline = time.monotonic() + timeout
    while waiting:
        assert time.monotonic() < deadline, f"{len(waiting)} hosts were never asked {name}"
        for agent in list(waiting):
            try:
                queries = agent.post("distributed/read", {}).json().get("queries", {})
            except httpx.TransportError:
                continue  # its worker was killed: the next request reconnects
            if name in queries:
                body = {
                    "queries": {name: [{"hostname": agent.hostname}]},
                    "statuses": {name: 0},
                    "messages": {name: ""},
                }
                assert agent.post("distributed/write", body).json() == {}
                waiting.remove(agent)


def _campaign(api: httpx.Client, agents: list[Agent]) -> None:
    """Run a campaign on every host and check every result arrived, once."""
    reply = api.post("/api/v1/fleet/queries/run", json={"query": SQL, "targets": [{"type": "all"}]})
    assert reply.status_code == 200, reply.text
    campaign_id = reply.json()["campaign_id"]
    _answer_until_done(agents, f"fleet_distributed_query_{campaign_id}")

    def all_in() -> bool:
        body = api.get(f"/api/v1/fleet/campaigns/{campaign_id}").json()["campaign"]
        return bool(body["totals"]["responded"] == HOSTS)

    _wait("every result counted", all_in)
    results = api.get(
        f"/api/v1/fleet/campaigns/{campaign_id}/results", params={"per_page": 100}
    ).json()["results"]
    assert sorted(r["hostname"] for r in results) == sorted(a.hostname for a in agents)
    assert all(r["status"] == "complete" for r in results)
    assert sorted(row["hostname"] for r in results for row in r["rows"]) == sorted(
        a.hostname for a in agents
    )


def test_two_workers_serve_one_fleet_and_a_dead_worker_comes_back(
    two_workers: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = two_workers
    clients = [httpx.Client(base_url=url, timeout=30) for _ in range(HOSTS)]  # a socket each
    api = httpx.Client(base_url=url, timeout=30)
    try:
        token = api.post("/api/v1/fleet/login", json=ADMIN).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        agents = [Agent(c, SECRET, f"host-{i}", f"uuid-{i}") for i, c in enumerate(clients)]
        for agent in agents:
            assert agent.enroll()["node_invalid"] is False

        def listed() -> bool:
            reply = api.get("/api/v1/fleet/hosts", params={"per_page": 100})
            return len(reply.json()["hosts"]) == HOSTS

        _wait("every host listed", listed)
        _campaign(api, agents)

        before = _workers(proc.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        _wait(
            "a new worker in place of the killed one",
            lambda: len(_workers(proc.pid)) == 2 and victim not in _workers(proc.pid),
        )
        _wait("/healthz after the restart", lambda: _healthy(url), 90)
        assert proc.poll() is None
        _campaign(api, agents)  # hosts that were on the dead worker reconnect and answer
    finally:
        api.close()
        for client in clients:
            client.close()

    workers = _workers(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    _wait("every worker to end with its supervisor", lambda: not any(_alive(p) for p in workers))


def test_workers_refuse_the_embedded_sqlite_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "serve", "--workers", "2"],
        env=_environment(DATA_DIR=str(tmp_path / "data"), PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--workers 2" in done.stderr and "SQLite" in done.stderr
    assert "--database-url postgresql://" in done.stderr and "--redis-url" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_workers_problem_names_what_is_missing(tmp_path: Path) -> None:
    pg, redis = "postgresql://u:p@127.0.0.1/db", "redis://127.0.0.1:6379"
    assert workers_problem(Settings(data_dir=tmp_path)) is None
    assert (
        workers_problem(Settings(data_dir=tmp_path, workers=3, database_url=pg, redis_url=redis))
        is None
    )
    no_redis = workers_problem(Settings(data_dir=tmp_path, workers=2, database_url=pg))
    assert no_redis is not None and "--redis-url" in no_redis and "--database-url" not in no_redis
    no_pg = workers_problem(Settings(data_dir=tmp_path, workers=2, redis_url=redis))
    assert no_pg is not None and "SQLite" in no_pg and "--database-url" in no_pg
    metrics = workers_problem(
        Settings(data_dir=tmp_path, workers=2, database_url=pg, redis_url=redis, metrics_port=0)
    )
    assert metrics is not None and "--metrics-port" in metrics
