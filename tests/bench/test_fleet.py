"""bench fleet: the lean generator's wire format, and a quick run against the real server.

The quick run (20 hosts, `python -m fleetwatch serve` in a subprocess, SQLite) checks that the
lean hosts speak the protocol exactly: a deleted host is answered node_invalid and enrolls
again, live queries are named `fleet_distributed_query_<id>`, statuses, messages and stats
arrive as osquery sends them, and that every figure of the report is produced. No timing
thresholds: the figures are only checked to exist.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from bench._lean_fleet import serve_command
from bench._lean_wire import (
    CANNED_STATS,
    FAILED_MESSAGE,
    LIVE_PREFIX,
    READ_PATH,
    ResponseParser,
    build_request,
    enroll_body,
    live_row,
    offered_queries,
    write_body,
)
from bench._processes import CpuWindow, memory_kib, process_tree
from bench.bench_fleet import _parse, latency_table, measure, report


def test_requests_are_what_osquery_sends() -> None:
    raw = build_request(READ_PATH, b"127.0.0.1:8412", b'{"node_key":"k1"}', "k1")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/osquery/distributed/read HTTP/1.1"
    assert b"Authorization: NodeKey k1" in lines
    assert b"User-Agent: osquery/5.23.1" in lines
    assert b"Content-Type: application/json" in lines
    assert b"Content-Length: 17" in lines
    assert body == b'{"node_key":"k1"}'
    enroll = build_request(b"/api/v1/osquery/enroll", b"h", b"{}", None)
    assert b"Authorization" not in enroll


def test_enroll_body_has_only_strings() -> None:
    body = enroll_body(7, "secret")
    assert "node_key" not in body
    assert body["enroll_secret"] == "secret" and body["platform_type"] == "9"
    for table in body["host_details"].values():
        assert all(isinstance(v, str) for v in table.values())


def test_write_answers_every_query_with_integer_statuses_and_string_rows() -> None:
    queries = {
        f"{LIVE_PREFIX}12": "SELECT hostname, uuid FROM system_info",
        "fleet_detail_query_osquery_flags": "SELECT name, value FROM osquery_flags",
        "fleet_label_query_3": "SELECT 1",
    }
    body = write_body("key", queries, 5, 1, fail_live=False)
    assert set(body) == {"node_key", "queries", "statuses", "messages", "stats"}
    for part in ("queries", "statuses", "messages", "stats"):
        assert set(body[part]) == set(queries)
    assert body["queries"][f"{LIVE_PREFIX}12"] == [live_row(5)]
    assert {"name": "distributed_interval", "value": "1"} in body["queries"][
        "fleet_detail_query_osquery_flags"
    ]
    assert body["queries"]["fleet_label_query_3"] == []
    assert all(type(s) is int and s == 0 for s in body["statuses"].values())
    assert all(v == CANNED_STATS for v in body["stats"].values())
    for rows in body["queries"].values():
        assert all(isinstance(v, str) for row in rows for v in row.values())
    failed = write_body("key", queries, 5, 1, fail_live=True)
    name = f"{LIVE_PREFIX}12"
    assert (failed["queries"][name], failed["statuses"][name]) == ([], 1)
    assert failed["messages"][name] == FAILED_MESSAGE and failed["stats"][name] == {}


def test_read_replies_osquery_would_reject_are_refused() -> None:
    assert offered_queries({"queries": {"a": "SELECT 1"}, "discovery": {"a": "SELECT 1"}}) == {
        "a": "SELECT 1"
    }
    assert offered_queries({}) == {}
    with pytest.raises(ValueError, match="not a string"):
        offered_queries({"queries": {"a": 1}})
    with pytest.raises(ValueError, match="discovery"):
        offered_queries({"queries": {"a": "SELECT 1"}, "discovery": {"a": ""}})


def test_response_parser_joins_fragments_and_splits_pipelined_answers() -> None:
    one = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    two = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 21\r\n\r\n" + b'{"node_invalid":true}'
    parser = ResponseParser()
    stream = one + two
    got = []
    for i in range(0, len(stream), 7):
        got += parser.feed(stream[i : i + 7])
    assert got == [(200, b"{}"), (401, b'{"node_invalid":true}')]
    with pytest.raises(ValueError, match="content-length"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")


@pytest.mark.slow
async def test_quick_run_speaks_the_protocol_and_produces_the_figures() -> None:
    args = _parse(["--quick"])
    run = await measure(args)
    counts = run.agents_status["counts"]
    # The deleted host was told node_invalid and enrolled again; nothing else failed.
    assert counts["node_invalid"] >= 1 and counts["reenrolled"] >= 1
    assert counts.get("errors", 0) == 0 and counts.get("timeouts", 0) == 0
    assert run.agents_status["errors"] == []
    assert run.server_errors == [] and run.probe_failures == []
    # Live queries are offered as fleet_distributed_query_<campaign id>.
    [campaign] = run.rounds
    assert f"{LIVE_PREFIX}{campaign.campaign_id}" in run.agents_status["live_names"]
    assert all(n.startswith(LIVE_PREFIX) for n in run.agents_status["live_names"])
    assert any(n.startswith("fleet_detail_query_") for n in run.agents_status["other_names"])
    # Every online host answered; every 5th failed with status 1 and osquery's message.
    assert campaign.online == args.hosts and run.missing() == 0
    assert len(campaign.written) == len(campaign.streamed) == args.hosts
    results = {r["hostname"]: r for r in run.campaign_results}
    assert len(results) == args.hosts
    for hostname, result in results.items():
        index = int(hostname.rsplit("-", 1)[1])
        if index % args.fail_every == 0:
            assert (result["status"], result["error"]) == ("error", FAILED_MESSAGE)
            assert result["rows"] == [] and result["stats"] == {}
        else:
            assert (result["status"], result["error"]) == ("complete", None)
            assert result["rows"] == [live_row(index)] and result["stats"] == CANNED_STATS
    # The figures: CPU against the bare endpoint, latencies, RSS, user calls.
    rep = report(run)
    for name in ("bare endpoint", "server, host round trip"):
        value = rep.get(name).value
        assert value > 0 and math.isfinite(value)
    # /proc counts CPU in 10 ms ticks, and 20 lean hosts may answer one campaign within one
    # tick (CI saw 0.00 s): their figure is a measurement, not necessarily above zero here.
    agents = rep.get("lean hosts, host round trip").value
    assert agents >= 0 and math.isfinite(agents)
    assert run.memory["server after campaigns"]["VmRSS"] > 0
    assert any(k.startswith("POST /queries/run (1 host), idle") for k in run.probes)
    assert any(k.startswith("GET /me") for k in run.probes)
    table = latency_table(run)
    assert "(a) write reply" in table and "(b) result streamed" in table
    assert orjson.dumps(rep.to_json())


def test_workers_runs_start_the_cluster_command_and_count_every_process(tmp_path: Path) -> None:
    args = _parse(["--workers", "2", "--redis-url", "redis://127.0.0.1:1/0"])
    args.database_url = "postgresql://u:p@127.0.0.1/db"
    command = serve_command(args, 8412, tmp_path)
    assert command[command.index("--workers") + 1] == "2"
    assert command[command.index("--redis-url") + 1] == "redis://127.0.0.1:1/0"
    assert "--workers" not in serve_command(_parse([]), 8412, tmp_path)
    # A parent with two children: RSS and CPU are summed over all three.
    child = "import time; time.sleep(60)"
    parent = (
        "import subprocess, sys, time\n"
        f"procs = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        tree = process_tree(proc.pid)
        assert tree[0] == proc.pid and len(tree) == 3
        own = memory_kib_of(proc.pid)
        children = [memory_kib_of(p) for p in tree[1:]]
        # the children's RSS moves while they start: each counts at least its smallest
        assert memory_kib(proc.pid)["VmRSS"] >= own + 2 * min(children) > own
    finally:
        for pid in reversed(process_tree(proc.pid)):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_cpu_window_counts_from_its_opening_and_a_gone_process_as_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    window = CpuWindow(os.getpid(), gone.pid)
    while window.spent()[0] == 0.0:
        sum(range(100_000))  # this process works until /proc's 10 ms tick shows it
    own, other = window.spent()
    assert own > 0 and other == 0.0


def memory_kib_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
