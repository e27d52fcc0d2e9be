"""Packaging: build the wheel, check it carries the migrations and the UI assets, install it
into a fresh virtual environment, then run `fleetwatch --version` and `fleetwatch serve` from
there and check /healthz (slow: it installs the dependencies from the package index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from fleetwatch import __version__
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "fleetwatch"


def run(*args: str | Path, cwd: Path, timeout: float = 900) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def data_files(folder: Path) -> set[str]:
    """Files under `folder` as wheel member names (no bytecode caches)."""
    return {
        str(p.relative_to(PACKAGE.parent))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


@pytest.mark.slow
def test_wheel_installs_and_serves(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT, cwd=tmp_path)
    [wheel] = list(wheels.glob("fleetwatch-*.whl"))
    members = set(zipfile.ZipFile(wheel).namelist())
    migrations = data_files(PACKAGE / "storage" / "migrations")
    assert "fleetwatch/storage/migrations/script.py.mako" in migrations
    assert any(m.startswith("fleetwatch/storage/migrations/versions/0001") for m in migrations)
    assert migrations <= members, migrations - members
    web = data_files(PACKAGE / "web") if (PACKAGE / "web").exists() else set()
    assert web <= members, web - members

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    bin_dir = venv / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    located = run(
        bin_dir / "python", "-c", "import fleetwatch; print(fleetwatch.__file__)", cwd=tmp_path
    )
    assert located.startswith(str(venv)), located  # the installed copy, not the source tree
    assert run(bin_dir / "fleetwatch", "--version", cwd=tmp_path).strip() == (
        f"fleetwatch {__version__}"
    )

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETWATCH_", "PYTHON"))}
    server = subprocess.Popen(
        [
            bin_dir / "fleetwatch",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            tmp_path / "data",
            "--enroll-secret",
            "packaged-enroll-secret",
            "--log-level",
            "info",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert health is not None and health.status_code == 200, server.poll()
        body = health.json()
        assert body["status"] == "ok" and body["degraded"] == [], body
        assert body["version"] == __version__ and body["database"] == {"status": "ok"}
        enroll = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/osquery/enroll",
            json={"enroll_secret": "packaged-enroll-secret", "host_identifier": "pkg-host"},
        )
        assert "node_key" in enroll.json()  # the migrations ran from the installed package
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any("enrolled" in line["msg"] for line in lines), stderr
    assert "packaged-enroll-secret" not in stderr
