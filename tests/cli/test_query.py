"""`fleetwatch query` against a real server with agents answering from a thread."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from itertools import pairwise

import httpx
import pytest
from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from fleetwatch.cli.query import fit_widths
from tests.agent import Agent
from tests.server import RunningServer


class AnsweringAgents:
    """Agents that poll distributed/read and answer live queries until stopped."""

    def __init__(self, server: RunningServer, n: int, extra: dict[str, str] | None = None) -> None:
        self.extra = extra or {}
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
                rows = {n: [{"host": agent.hostname, "n": "1", **self.extra}] for n in queries}
                number = int(agent.hostname.rsplit("-", 1)[1])
                stats = {
                    n: {"wall_time_ms": 10 * (number + 1), "memory": 1024 * (number + 1)}
                    for n in queries
                }
                agent.post(
                    "distributed/write",
                    {"queries": rows, "statuses": {n: 0 for n in queries}, "stats": stats},
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


def run_query(
    server: RunningServer, token: str, *args: str, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FLEETWATCH_TOKEN": token,
        "FLEETWATCH_SERVER": server.url,
        "COLUMNS": str(columns),
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
        '"host_id","hostname","status","error","host","n"',
        '"2","cli-1","complete","","cli-1","1"',
    ]
    table = run_query(live_server, admin_token, "--sql", "SELECT 1", "--hosts", "1", "--exit")
    assert table.returncode == 0 and "cli-0" in table.stdout


def test_query_says_live_once_caught_up(
    live_server: RunningServer, admin_token: str, agents: AnsweringAgents
) -> None:
    result = run_query(
        live_server, admin_token, "--sql", "SELECT 1 AS n", "--all", "--exit", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    # the stream's `current` marker, once, before the final summary
    said = re.findall(r"live \(caught up to (\d+)\)", result.stderr)
    assert len(said) == 1 and int(said[0]) > 0, result.stderr
    assert result.stderr.index("live (caught up") < result.stderr.index("finished: 3/3")


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


def test_rerun_a_campaign_on_some_of_its_hosts(
    live_server: RunningServer, admin_token: str, agents: AnsweringAgents
) -> None:
    api = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
    )
    first = run_query(
        live_server, admin_token, "--sql", "SELECT 1 AS n", "--all", "--exit", "--sample", "1"
    )
    assert first.returncode == 0, first.stderr
    assert "a sample of 1 of 3 targets" in first.stderr
    campaign_id = api.get("/api/v1/fleet/campaigns").json()["campaigns"][0]["id"]
    rest = run_query(
        live_server,
        admin_token,
        "--rerun",
        str(campaign_id),
        "--hosts",
        "remaining",
        "--exit",
        "--format",
        "json",
    )
    assert rest.returncode == 0, rest.stderr
    assert f"a re-run of campaign {campaign_id}" in rest.stderr
    answered = [json.loads(line)["hostname"] for line in rest.stdout.splitlines() if line]
    first_host = api.get(f"/api/v1/fleet/campaigns/{campaign_id}/results").json()["results"][0]
    assert sorted([*answered, first_host["hostname"]]) == ["cli-0", "cli-1", "cli-2"]
    # everyone answered: no host is left for the default subset, non_responders
    nobody = run_query(live_server, admin_token, "--rerun", str(campaign_id))
    assert nobody.returncode == 1 and "no targets that did not answer" in nobody.stderr
    bogus = run_query(live_server, admin_token, "--rerun", str(campaign_id), "--hosts", "some")
    assert bogus.returncode == 2 and "--hosts is one of non_responders" in bogus.stderr
    both = run_query(live_server, admin_token, "--rerun", str(campaign_id), "--sql", "SELECT 1")
    assert both.returncode == 2 and "one of --sql, --rerun ID or --diff" in both.stderr
    bad_sample = run_query(live_server, admin_token, "--sql", "SELECT 1", "--all", "--sample", "x")
    assert bad_sample.returncode == 2 and "--sample must be a percentage" in bad_sample.stderr
    api.close()


def test_query_caps_the_campaign_and_prints_its_cost_and_truncation(
    live_server: RunningServer, admin_token: str, agents: AnsweringAgents
) -> None:
    whole = run_query(live_server, admin_token, "--sql", "SELECT 1 AS n", "--all", "--exit")
    assert whole.returncode == 0, whole.stderr
    # three answers: wall time 10, 20, 30 ms and memory 1, 2, 3 KiB (the p95 of three is
    # the second: the campaign's sketch answers with a value it saw, at or below the rank)
    assert (
        "cost over 3 answers: wall time p50 20 ms, p95 20 ms, max 30 ms; "
        "memory p50 2.0 KiB, p95 2.0 KiB, max 3.0 KiB" in whole.stderr
    ), whole.stderr
    assert "truncated" not in whole.stderr
    capped = run_query(
        live_server,
        admin_token,
        "--sql",
        "SELECT 1 AS n",
        "--all",
        "--max-rows",
        "2",
        "--max-bytes",
        "100000",
        "--timeout",
        "5",
        "--format",
        "json",
    )
    results = [json.loads(line) for line in capped.stdout.splitlines() if line.strip()]
    assert sum(len(r["rows"]) for r in results) == 2, capped.stdout
    assert (
        "truncated: the campaign's max_rows (2) was reached; no host was asked after that"
        in capped.stderr
    ), capped.stderr
    api = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
    )
    latest = api.get("/api/v1/fleet/campaigns").json()["campaigns"][0]
    assert latest["limits"] == {"max_rows": 2, "max_bytes": 100000}
    assert latest["truncated"] is True and latest["truncated_reason"] == "max_rows"
    # a re-run keeps the original's limits unless given; the CLI passes its own
    again = run_query(
        live_server,
        admin_token,
        "--rerun",
        str(latest["id"]),
        "--hosts",
        "all",
        "--max-bytes",
        "5",
        "--timeout",
        "5",
    )
    assert "truncated: the campaign's max_bytes (5) was reached" in again.stderr, again.stderr
    rerun = api.get("/api/v1/fleet/campaigns").json()["campaigns"][0]
    assert rerun["limits"] == {"max_rows": 2, "max_bytes": 5}
    for bad in ("0", "-3"):
        refused = run_query(
            live_server, admin_token, "--sql", "SELECT 1", "--all", "--max-rows", bad
        )
        assert refused.returncode == 2 and "--max-rows" in refused.stderr
    api.close()


def test_diff_two_runs(live_server: RunningServer, admin_token: str) -> None:
    api = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
    )
    # a hostname an agent chose to be a spreadsheet formula: the CSV diff must defuse it
    hostname = "=cmd|' /C calc'!A0"
    agent = Agent(httpx.Client(base_url=live_server.url), "test-enroll-secret", hostname, "d-u")
    agent.enroll()
    runs = []
    for rows in ([{"p": "sshd"}, {"p": "cron"}], [{"p": "sshd"}, {"p": "miner"}]):
        reply = api.post(
            "/api/v1/fleet/queries/run",
            json={"query": "SELECT p FROM x", "targets": [{"type": "all"}]},
        )
        campaign_id = reply.json()["campaign_id"]
        name = f"fleet_distributed_query_{campaign_id}"
        agent.post("distributed/write", {"queries": {name: rows}, "statuses": {name: 0}})
        runs.append(campaign_id)
    old, new = runs
    shown = run_query(live_server, admin_token, "--diff", str(new), str(old))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1:] == ['+ {"p": "miner"}', '- {"p": "cron"}']
    assert hostname in shown.stdout.splitlines()[0]
    assert "1 hosts answered differently" in shown.stderr
    as_json = run_query(live_server, admin_token, "--diff", str(new), str(old), "--format", "json")
    expected = api.get(f"/api/v1/fleet/campaigns/{new}/diff", params={"against": old}).json()
    assert json.loads(as_json.stdout) == expected
    assert expected["hosts"][0]["added"] == [{"p": "miner"}]
    other = api.post(
        "/api/v1/fleet/queries/run", json={"query": "SELECT 2", "targets": [{"type": "all"}]}
    ).json()["campaign_id"]
    as_csv = run_query(live_server, admin_token, "--diff", str(new), str(old), "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines()[1:] == [
        '"1","\'=cmd|\' /C calc\'!A0","added","{""p"": ""miner""}"',
        '"1","\'=cmd|\' /C calc\'!A0","removed","{""p"": ""cron""}"',
    ]
    different = run_query(live_server, admin_token, "--diff", str(new), str(other))
    assert different.returncode == 1 and "ran different SQL" in different.stderr
    agent.client.close()
    api.close()


PROGRESS = re.compile(
    r"^campaign \d+: (\d+)/(\d+) answered, \d+ online, \d+ failed, \d+ rows, "
    r"\d+\.\ds elapsed$"
)


def test_query_prints_one_table_sized_to_the_terminal(
    live_server: RunningServer, admin_token: str
) -> None:
    long_path = "/var/lib/" + "very-long-directory-name/" * 8 + "file.txt"
    agents = AnsweringAgents(live_server, 3, extra={"path": long_path})
    try:
        result = run_query(
            live_server, admin_token, "--sql", "SELECT 1", "--all", "--exit", columns=60
        )
    finally:
        agents.stop()
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert all(len(line) <= 60 for line in lines), result.stdout
    # one header (the first line, host column first) and one row per host: one table
    header, rule, *rows = lines
    assert header.split()[0] == "host", result.stdout
    assert header.count("host") == 2 and "path" in header  # the query's own `host` column
    assert set(rule) <= set("━╇ "), result.stdout
    assert [row.split()[0] for row in rows] == ["cli-0", "cli-1", "cli-2"]
    assert all(row.rstrip().endswith("…") for row in rows), result.stdout  # cut, not wrapped
    assert long_path not in result.stdout


def test_query_progress_on_stderr_when_piped(
    live_server: RunningServer, admin_token: str, agents: AnsweringAgents
) -> None:
    result = run_query(
        live_server, admin_token, "--sql", "SELECT 1 AS n", "--all", "--exit", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr  # lines, not carriage-return animation
    progress = [PROGRESS.match(line) for line in result.stderr.splitlines()]
    counts = [(int(m[1]), int(m[2])) for m in progress if m]
    assert counts[0] == (0, 3) and counts[-1] == (3, 3), result.stderr
    # a line per change: answered counts only grow, and no line repeats the one before
    assert [a for a, _ in counts] == sorted(a for a, _ in counts)
    lines = [m[0] for m in progress if m]
    assert all(a.split(", ")[:-1] != b.split(", ")[:-1] for a, b in pairwise(lines))


def test_query_exit_ends_at_the_timeout_naming_silent_hosts(
    live_server: RunningServer, admin_token: str, agents: AnsweringAgents
) -> None:
    # enrolled just now, so online by its seen time, but it stopped: it never polls
    stopped = Agent(agents.client, "test-enroll-secret", "stopped-1", "stopped-uuid")
    stopped.enroll()
    found = httpx.get(
        f"{live_server.url}/api/v1/fleet/hosts",
        params={"query": "stopped-1"},
        headers={"Authorization": f"Bearer {admin_token}"},
    ).json()["hosts"]
    result = run_query(
        live_server, admin_token, "--sql", "SELECT 1 AS n", "--all", "--exit", "--timeout", "3"
    )
    assert result.returncode == 3, result.stderr
    assert re.search(r"campaign \d+ expired: 3/4 answered", result.stderr), result.stderr
    assert f"no answer from 1 host(s): stopped-1 (id {found[0]['id']})" in result.stderr
    assert "cli-0" in result.stdout and "stopped-1" not in result.stdout


def test_query_help_documents_exit_status() -> None:
    _register()
    result = CliRunner().invoke(app, ["query", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    assert (
        "Exit status: 0 when every host it waited for answered, 1 when no host answered, 3 when "
        "some answered and others did not." in text
    ), text


def test_fit_widths_narrows_the_widest_columns_first() -> None:
    assert fit_widths([4, 1, 80], 100) == [4, 1, 80]  # room for all: unchanged
    assert fit_widths([4, 1, 80], 50) == [4, 1, 45]
    assert fit_widths([4, 30, 80], 50) == [4, 23, 23]
    assert fit_widths([30, 30, 30], 3) == [1, 1, 1]  # never below one cell
