"""`fleetwatch watch` as a subprocess against a real server; its short form and refusals."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from fleetwatch.cli.watch import short_form_task, where_clause
from tests.cli.command_lines import CommandLines
from tests.query.task_client import TASKS, TaskClient, kind_query, task_body
from tests.server import RunningServer


class Watch(CommandLines):
    """A running `fleetwatch watch` whose stdout lines can be awaited."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(["watch", *args])


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
    marker, *changes = [json.loads(line) for line in rest if line.strip()]
    # caught up after the initial results: the same cursor as the last initial message
    assert marker == {**marker, "type": "current", "seq": initial["seq"]}
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
    assert "live (caught up to" in stderr  # told only once caught up
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
    # CONTINUOUS_STOP_MATCH: a row that stops matching is reported, so it leaves the view
    assert task["querySpec"]["options"] == ["CONTINUOUS", "CONTINUOUS_STOP_MATCH", "EXPAND_CONTENT"]
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


def test_rows_leaving_the_results_are_reported_when_piped(
    live_server: RunningServer, tasks: TaskClient
) -> None:
    for name in ("r1", "r2", "r3"):
        tasks.doc("POST", "/docs/l", {"documentSelfLink": name, "color": "red"})
    watch = Watch(
        ["--kind", "docs:l", "--where", "color=red", "--count", "4",
         "--server", live_server.url, "--token", tasks.token]
    )  # fmt: skip
    try:
        watch.until("/docs/l/r3")
        tasks.doc("PATCH", "/docs/l/r1", {"color": "blue"})  # no longer matches
        tasks.doc("DELETE", "/docs/l/r2")
        # an expiration time in the past: the PATCH, then the expiry sweep's delete
        tasks.doc("PATCH", "/docs/l/r3", {"documentExpirationTimeMicros": 1})
        code, rest, stderr = watch.finish()
    finally:
        watch.close()
    assert code == 0, stderr
    changes = [line.split(maxsplit=1)[1] for line in rest if "/docs/l/" in line]
    assert changes == [
        "LEFT   /docs/l/r1 color=blue (the document no longer matches the query)",
        "DELETE /docs/l/r2 color=red (the document was deleted)",
        "PATCH  /docs/l/r3 color=red",
        "DELETE /docs/l/r3 color=red (expired)",
    ], rest


class TerminalWatch:
    """`fleetwatch watch` with its stdout on a pseudo-terminal; `screen()` is what the
    terminal shows now (rich redraws its live view in place)."""

    #: rich moves back over its previous frame with CR, erase line, then (cursor up, erase)
    FRAME = re.compile(r"\r\x1b\[2K(?:\x1b\[1A\x1b\[2K)*")
    CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

    def __init__(self, args: list[str]) -> None:
        master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch", "watch", *args],
            stdout=slave,
            stderr=subprocess.PIPE,
            env=env,
        )
        os.close(slave)
        self.master = master
        self.output = ""
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            with self.lock:
                self.output += chunk.decode(errors="replace")

    def screen(self) -> list[str]:
        with self.lock:
            output = self.output
        frame = self.FRAME.split(output)[-1]
        return [self.CONTROL.sub("", line).rstrip() for line in frame.replace("\r", "").split("\n")]

    def until(self, test: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if test(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"the screen never passed the test: {self.screen()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        if self.process.stderr is not None:
            self.process.stderr.close()
        os.close(self.master)


def table_rows(screen: list[str]) -> list[str]:
    """The links in the table's rows (change lines below the table have no cell rules)."""
    return [line.split("│")[1].strip() for line in screen if line.count("│") >= 2]


def test_rows_leaving_the_results_disappear_from_the_terminal_view(
    live_server: RunningServer, tasks: TaskClient
) -> None:
    for name in ("h1", "h2"):
        tasks.doc("POST", "/docs/v", {"documentSelfLink": name, "os": "darwin"})
    watch = TerminalWatch(
        ["--kind", "docs:v", "--where", "os=darwin",
         "--server", live_server.url, "--token", tasks.token]
    )  # fmt: skip
    try:
        screen = watch.until(lambda s: table_rows(s) == ["/docs/v/h1", "/docs/v/h2"])
        assert any("2 matching" in line for line in screen), screen
        tasks.doc("POST", "/docs/v", {"documentSelfLink": "h3", "os": "darwin"})
        tasks.doc("PATCH", "/docs/v/h1", {"os": "linux"})  # no longer matches
        tasks.doc("DELETE", "/docs/v/h2")
        screen = watch.until(
            lambda s: any("LEFT" in line for line in s) and any("DELETE" in line for line in s)
        )
        assert table_rows(screen) == ["/docs/v/h3"], screen
        assert any("1 matching" in line for line in screen), screen
        # the changes show under the table, the leaving ones too
        assert any("LEFT" in line and "/docs/v/h1" in line for line in screen), screen
    finally:
        watch.close()
    assert tasks.get(TASKS)["documentLinks"] == []


def test_sigterm_deletes_the_task(live_server: RunningServer, tasks: TaskClient) -> None:
    tasks.doc("POST", "/docs/s", {"documentSelfLink": "one", "name": "alpha"})
    watch = Watch(["--kind", "docs:s", "--server", live_server.url, "--token", tasks.token])
    try:
        watch.until("/docs/s/one")
        assert len(tasks.get(TASKS)["documentLinks"]) == 1
        watch.process.send_signal(signal.SIGTERM)
        code, _, stderr = watch.finish()
    finally:
        watch.close()
    assert code == 0, stderr
    assert tasks.get(TASKS)["documentLinks"] == []  # not left running for its lifetime


def test_help_explains_the_where_operators() -> None:
    _register()
    result = CliRunner().invoke(app, ["watch", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    assert "~ prefix (the value starts with: path~/usr/local)" in text, text
    assert "on any exit the task it created is deleted, unless --keep" in text, text


def test_group_counts_piped(live_server: RunningServer, tasks: TaskClient) -> None:
    for name, version in (("g1", "5.9"), ("g2", "5.9"), ("g3", "5.10")):
        tasks.doc("POST", "/docs/gv", {"documentSelfLink": name, "ver": version})
    watch = Watch(
        ["--kind", "docs:gv", "--group-by", "ver", "--count", "2",
         "--server", live_server.url, "--token", tasks.token]
    )  # fmt: skip
    try:
        table = watch.until("5.10")
        tasks.doc("PATCH", "/docs/gv/g1", {"ver": "5.10"})
        tasks.doc("PATCH", "/docs/gv/g2", {"ver": "5.11"})
        code, rest, stderr = watch.finish()
    finally:
        watch.close()
    assert code == 0, stderr
    assert any("3 matching in 2 groups" in line for line in watch.seen), watch.seen
    rows = [line.split("│")[1:3] for line in table + rest if line.count("│") >= 3]
    assert [[cell.strip() for cell in row] for row in rows] == [["5.9", "2"], ["5.10", "1"]]
    changes = [line.split(maxsplit=1)[1] for line in rest if "COUNTS" in line]
    assert changes == ["COUNTS 5.9=1 5.10=2", "COUNTS 5.9=0 5.11=1"], rest


def test_group_counts_as_a_live_table_on_a_terminal(
    live_server: RunningServer, tasks: TaskClient
) -> None:
    for name, team in (("p1", "web"), ("p2", "web"), ("p3", "db")):
        tasks.doc("POST", "/docs/pf", {"documentSelfLink": name, "team": team, "passes": "no"})
    watch = TerminalWatch(
        ["--kind", "docs:pf", "--where", "passes=no", "--group-by", "team",
         "--server", live_server.url, "--token", tasks.token]
    )  # fmt: skip
    try:
        screen = watch.until(lambda s: table_rows(s) == ["web", "db"])
        assert any("3 matching in 2 groups" in line for line in screen), screen
        tasks.doc("PATCH", "/docs/pf/p3", {"passes": "yes"})  # db empties: its row goes
        tasks.doc("POST", "/docs/pf", {"documentSelfLink": "p4", "team": "ops", "passes": "no"})
        screen = watch.until(lambda s: table_rows(s) == ["web", "ops"])
        assert any("3 matching in 2 groups" in line for line in screen), screen
        counts = [line.split("│")[2].strip() for line in screen if line.count("│") >= 3]
        assert counts == ["2", "1"], screen
    finally:
        watch.close()
    assert tasks.get(TASKS)["documentLinks"] == []
