"""`fleetwatch policy list|create|show` against a real server with an agent; `--watch`
(as a subprocess) prints the counts again as the host's answer changes."""

from __future__ import annotations

import json
import time

import httpx
from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from tests.agent import Agent
from tests.api.test_policies import checkin
from tests.cli.command_lines import CommandLines
from tests.server import RunningServer


def test_policy_commands(live_server: RunningServer, admin_token: str) -> None:
    _register()
    runner = CliRunner()
    common = ["--server", live_server.url, "--token", admin_token]
    made = runner.invoke(
        app,
        ["policy", "create", "--name", "EDR", "--query", "SELECT 1 FROM processes",
         "--interval", "1", "--json", *common],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    policy_id = json.loads(made.output)["id"]
    bad = runner.invoke(app, ["policy", "create", "--name", "x", "--query", "SELEC 1", *common])
    assert bad.exit_code == 1 and "syntax error" in bad.output
    listed = runner.invoke(app, ["policy", "list", *common])
    assert listed.exit_code == 0 and "EDR" in listed.output
    with httpx.Client(base_url=live_server.url) as agents_client:
        agent = Agent(agents_client, "test-enroll-secret", "c0", "cu0")
        agent.enroll()
        watch = CommandLines(["policy", "show", str(policy_id), "--watch", *common])
        try:
            assert "unknown 1" in watch.until("EDR")[-1]
            checkin(agent, {policy_id: []})
            assert "fail 1" in watch.until("pass 0  fail 1")[-1]
            assert "c0" in watch.until("failing hosts")[-1]
            time.sleep(1.05)
            checkin(agent, {policy_id: [{"1": "1"}]})
            watch.until("pass 1  fail 0  unknown 0")
            assert "none" in watch.until("failing hosts")[-1]
        finally:
            watch.close()
        shown = runner.invoke(app, ["policy", "show", str(policy_id), "--json", *common])
        assert json.loads(shown.output)["policy"]["passing_host_count"] == 1
        listed_json = runner.invoke(app, ["policy", "list", "--json", *common])
        assert [p["passing_host_count"] for p in json.loads(listed_json.output)] == [1]
