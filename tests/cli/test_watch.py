"""`fleetwatch watch` as a subprocess against a real server; its short form and refusals."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from fleetwatch.cli.watch import short_form_task, where_clause
from tests.query.task_client import TASKS, TaskClient, kind_query, task_body
from tests.server import RunningServer


class Watch:
    """A running `fleetwatch watch` whose stdout lines can be awaited."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch", "watch", *args],
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

    def until(self, text: str, timeout: float = 30.0) -> list[str]:
        """Lines up to the first one containing `text`."""
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            out.append(line)
            self.seen.append(line)
            if text in line:
                return out
        raise AssertionError(f"no line with {text!r} in {self.seen}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def finish(self, timeout: float = 30.0) -> tuple[int, list[str], str]:
        code = self.process.wait(timeout=timeout)
        rest: list[str] = []
        time.sleep(0.1)
        while not self.lines.empty():
            rest.append(self.lines.get())
        assert self.process.stderr is not None
        return code, rest, self.process.stderr.read()


@pytest.fixture
def tasks(live_server: RunningServer, admin_token: str) -> Iterator[TaskClient]:
    client = TaskClient(live_server, admin_token)
    yield client
    client.close()


def test_short_form_json_lines(live_server: RunningServer, tasks: TaskClient) -> None:
    tasks.doc("POST", "/docs/w", {"documentSelfLink": "r1", "color": "red", "mem": 8})
    tasks.doc("POST", "/docs/w", {"documentSelfLink": "b1", "color": "blue", "mem": 8})
    watch = Watch(
        ["--kind", "docs:w", "--where", "color=red", "--where", "mem>=4", "--json",
         "--count", "2", "--server", live_server.url, "--token", tasks.token]
    )  # fmt: skip
    try:
        (initial,) = [json.loads(line) for line in watch.until('"initial"')]
        assert initial["last"] is True
        assert initial["results"]["documentLinks"] == ["/docs/w/r1"]
        assert len(tasks.get(TASKS)["documentLinks"]) == 1
        tasks.doc("POST", "/docs/w", {"documentSelfLink": "r2", "color": "red", "mem": 16})
        tasks.doc("POST", "/docs/w", {"documentSelfLink": "r3", "color": "red", "mem": 1})
        tasks.doc("PATCH", "/docs/w/r1", {"mem": 9})
        code, rest, stderr = watch.finish()
    finally:
        watch.close()
    assert code == 0, stderr
    changes = [json.loads(line) for line in rest if line.strip()]
    assert [c["results"]["documentLinks"] for c in changes] == [["/docs/w/r2"], ["/docs/w/r1"]]
    assert [c["documentUpdateAction"] for c in changes] == ["POST", "PATCH"]
    assert tasks.get(TASKS)["documentLinks"] == []  # the command removed its task


def test_task_file_table_over_websocket(
    live_server: RunningServer, tasks: TaskClient, tmp_path: Path
) -> None:
    tasks.doc("POST", "/docs/t", {"documentSelfLink": "one", "name": "alpha"})
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(task_body(kind_query("docs:t"), "EXPAND_CONTENT")))
    watch = Watch(
        [str(task_file), "--transport", "ws", "--count", "1",
         "--server", live_server.url, "--token", tasks.token]
    )  # fmt: skip
    try:
        table = watch.until("/docs/t/one")
        assert any("1 matching" in line for line in table)
        assert "alpha" in table[-1]
        tasks.doc("POST", "/docs/t", {"documentSelfLink": "two", "name": "beta"})
        code, rest, stderr = watch.finish()
    finally:
        watch.close()
    assert code == 0, stderr
    (line,) = [line for line in rest if "/docs/t/two" in line]
    assert "POST" in line and "name=beta" in line


def test_short_form_clauses() -> None:
    assert where_clause("platform=darwin")["term"] == {
        "propertyName": "platform",
        "matchValue": "darwin",
        "matchType": "TERM",
    }
    assert where_clause("name=web-*")["term"]["matchType"] == "WILDCARD"
    assert where_clause("os!=linux")["occurance"] == "MUST_NOT_OCCUR"
    assert where_clause("path~/usr")["term"]["matchType"] == "PREFIX"
    assert where_clause("osquery_version<5.10")["term"]["range"] == {
        "type": "DOUBLE",
        "max": 5.10,
        "isMaxInclusive": False,
    }
    assert where_clause("mem>=4")["term"]["range"] == {
        "type": "LONG",
        "min": 4,
        "isMinInclusive": True,
    }
    task = short_form_task("fleet:host", ["platform=darwin"])
    assert task["querySpec"]["options"] == ["CONTINUOUS", "EXPAND_CONTENT"]
    assert len(task["querySpec"]["query"]["booleanClauses"]) == 2
    with pytest.raises(ValueError, match="needs a number"):
        where_clause("version<abc")
    with pytest.raises(ValueError, match="expected FIELD OP VALUE"):
        where_clause("just words")


def test_refusals(tmp_path: Path) -> None:
    _register()
    runner = CliRunner()
    cases = [
        (["watch"], "nothing to watch"),
        (["watch", "--where", "x<abc"], "needs a number"),
        (["watch", str(tmp_path / "missing.json")], "cannot read"),
        (["watch", "--kind", "k", "--transport", "carrier-pigeon"], "--transport"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    cases.append((["watch", str(bad)], "is not JSON"))
    for args, message in cases:
        result = runner.invoke(app, args, env={"FLEETWATCH_TOKEN": "t"})
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
