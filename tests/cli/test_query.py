"""`fleetwatch query` against a real server with agents answering from a thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.agent import Agent
from tests.server import RunningServer


class AnsweringAgents:
    """Agents that poll distributed/read and answer live queries until stopped."""

    def __init__(self, server: RunningServer, n: int) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=30)
        self.agents = [
            Agent(self.client, "test-enroll-secret", f"cli-{i}", f"cu-{i}") for i in range(n)
        ]
        for agent in self.agents:
            agent.enroll()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            for agent in self.agents:
                queries = agent.post("distributed/read", {}).json().get("queries", {})
                if not queries:
                    continue
                rows = {n: [{"host": agent.hostname, "n": "1"}] for n in queries}
                agent.post(
                    "distributed/write", {"queries": rows, "statuses": {n: 0 for n in queries}}
                )

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        self.client.close()


@pytest.fixture
def agents(live_server: RunningServer) -> Iterator[AnsweringAgents]:
    running = AnsweringAgents(live_server, 3)
    yield running
    running.stop()


def run_query(server: RunningServer, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FLEETWATCH_TOKEN": token,
        "FLEETWATCH_SERVER": server.url,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "fleetwatch", "query", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_query_json_and_csv(
    live_server: RunningServer, admin_token: str, agents: AnsweringAgents
) -> None:
    result = run_query(
        live_server,
        admin_token,
        "--sql",
        "SELECT 1 AS n",
        "--all",
        "--exit",
        "--format",
        "json",
        "--timeout",
        "60",
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert sorted(r["hostname"] for r in lines) == ["cli-0", "cli-1", "cli-2"]
    assert all(r["rows"] == [{"host": r["hostname"], "n": "1"}] for r in lines)
    assert "finished: 3/3 answered" in result.stderr
    csv_out = run_query(
        live_server,
        admin_token,
        "--sql",
        "SELECT 1",
        "--hosts",
        "cli-1",
        "--exit",
        "--format",
        "csv",
    )
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines() == [
        "host_id,hostname,status,error,host,n",
        "2,cli-1,complete,,cli-1,1",
    ]
    table = run_query(live_server, admin_token, "--sql", "SELECT 1", "--hosts", "1", "--exit")
    assert table.returncode == 0 and "cli-0" in table.stdout


def test_query_errors_and_nothing_answered(live_server: RunningServer, admin_token: str) -> None:
    client = httpx.Client(base_url=live_server.url)
    Agent(client, "test-enroll-secret", "silent", "silent-uuid").enroll()
    silent = run_query(
        live_server, admin_token, "--sql", "SELECT 1", "--all", "--exit", "--timeout", "1"
    )
    assert silent.returncode == 1
    assert "0/1 answered" in silent.stderr
    bad_sql = run_query(live_server, admin_token, "--sql", "DELETE FROM x", "--all")
    assert bad_sql.returncode == 1 and "only read queries" in bad_sql.stderr
    no_target = run_query(live_server, admin_token, "--sql", "SELECT 1")
    assert no_target.returncode == 2 and "no targets" in no_target.stderr
    unknown = run_query(live_server, admin_token, "--sql", "SELECT 1", "--hosts", "nope")
    assert unknown.returncode == 1 and "matches 0 hosts" in unknown.stderr
    bad_token = run_query(live_server, "wrong", "--sql", "SELECT 1", "--all")
    assert bad_token.returncode == 1 and "HTTP 401" in bad_token.stderr
    client.close()
