"""`fleetwatch policy list|create|show` against a real server with an agent; `--watch`
(as a subprocess) prints the counts again as the host's answer changes."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time

import httpx
from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from tests.agent import Agent
from tests.api.test_policies import checkin
from tests.server import RunningServer


class Lines:
    """A running command whose stdout lines can be awaited."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {self.seen}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


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
        watch = Lines(["policy", "show", str(policy_id), "--watch", *common])
        try:
            assert "unknown 1" in watch.until("EDR")
            checkin(agent, {policy_id: []})
            assert "fail 1" in watch.until("pass 0  fail 1")
            assert "c0" in watch.until("failing hosts")
            time.sleep(1.05)
            checkin(agent, {policy_id: [{"1": "1"}]})
            watch.until("pass 1  fail 0  unknown 0")
            assert "none" in watch.until("failing hosts")
        finally:
            watch.close()
        shown = runner.invoke(app, ["policy", "show", str(policy_id), "--json", *common])
        assert json.loads(shown.output)["policy"]["passing_host_count"] == 1
        listed_json = runner.invoke(app, ["policy", "list", "--json", *common])
        assert [p["passing_host_count"] for p in json.loads(listed_json.output)] == [1]
