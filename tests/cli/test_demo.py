"""`fleetwatch demo` as a subprocess: server, simulated hosts, inventory, a live query whose
answers stream in, the printed URL and credentials, and a clean stop on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from fleetwatch.cli.demo import CREDENTIALS_FILE, demo_credentials


def demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
    env["COLUMNS"] = "200"
    return env


def test_demo_runs_a_live_query_across_the_simulated_hosts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "demo", "--hosts", "5", "--port", "0",
         "--data-dir", str(tmp_path / "demo"), "--exit-after-demo"],
        capture_output=True, text=True, timeout=180, env=demo_env(), check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "Inventory (5 hosts)" in out
    assert "5 of 5 hosts answered the live query." in out
    # two policies, answered by every host from its own tables: some pass, some fail
    table = out[out.index("Policies (answered at check-in") :].split("└")[0]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines()]
    rows = [row for row in rows if row]
    assert len(rows) == 2
    for _, _, passing, failing, unknown in rows:
        assert int(passing) > 0 and int(failing) > 0 and int(unknown) == 0
    # It stops after the live query, and says so rather than "is running".
    assert "fleetwatch is running" not in out
    closing = out[out.index("fleetwatch ran at http://127.0.0.1:") :]
    assert "stops now (--exit-after-demo" in closing
    url = closing.split()[3]
    # The UI's address comes first on the closing screen, before the API recipes.
    assert closing.splitlines()[1].strip() == f"open the UI: {url}/ui"
    creds = json.loads((tmp_path / "demo" / CREDENTIALS_FILE).read_text())
    assert f"admin: {creds['email']} / {creds['password']}" in out
    assert f"--enroll-secret {creds['enroll_secret']}" in out
    assert out.rstrip().endswith("fleetwatch demo: stopped.")
    assert (tmp_path / "demo" / "fleetwatch.db").exists()


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch", "demo", "--hosts", "2", "--port", "0",
         "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=demo_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 150
        for line in proc.stdout:
            seen.append(line)
            if "Ctrl-C stops" in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        text = "".join(seen)
        closing = text[text.index("fleetwatch is running at http://127.0.0.1:") :]
        assert closing.splitlines()[1].strip().startswith("open the UI: http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(seen) + rest
    assert "fleetwatch demo: stopped." in rest


def test_credentials_come_from_the_environment_or_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FLEETWATCH_ADMIN_EMAIL", "FLEETWATCH_ADMIN_PASSWORD", "FLEETWATCH_ENROLL_SECRET"):
        monkeypatch.delenv(name, raising=False)
    first = demo_credentials(tmp_path)
    assert demo_credentials(tmp_path) == first
    assert oct((tmp_path / CREDENTIALS_FILE).stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("FLEETWATCH_ADMIN_PASSWORD", "from-the-env-1")
    again = demo_credentials(tmp_path)
    assert again.password == "from-the-env-1" and again.enroll_secret == first.enroll_secret


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--hosts", "0"], "--hosts must be between"), (["--port", "70000"], "--port must be")],
)
def test_bad_options(args: list[str], message: str, tmp_path: Path) -> None:
    _register()
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output
