"""`fleetwatch simulate` as a subprocess against a real server (HTTP and HTTPS with a CA
file), and its refusals of bad options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from fleetwatch.config import Settings
from tests.server import RunningServer, running_server


def simulate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetwatch", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def hosts_of(server: RunningServer) -> list[dict[str, object]]:
    settings = server.settings
    with httpx.Client(base_url=server.url, verify=False) as client:
        login = {"email": settings.admin_email, "password": settings.admin_password}
        token = client.post("/api/v1/fleet/login", json=login).json()["token"]
        reply = client.get("/api/v1/fleet/hosts", headers={"Authorization": f"Bearer {token}"})
        hosts: list[dict[str, object]] = reply.json()["hosts"]
        return hosts


def test_simulated_hosts_enroll_and_show_up_in_the_inventory(live_server: RunningServer) -> None:
    result = simulate(
        "--server", live_server.url,
        "--enroll-secret", "test-enroll-secret",
        "--hosts", "4",
        "--platforms", "ubuntu=1,windows=1",
        "--seed", "3",
        "--duration", "4",
        "--start-period", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "4 hosts (ubuntu 2, windows 2)" in result.stdout
    assert "stopped: 4/4 enrolled" in result.stdout
    hosts = hosts_of(live_server)
    assert len(hosts) == 4
    assert sorted(str(h["platform"]) for h in hosts) == ["ubuntu", "ubuntu", "windows", "windows"]


def test_https_with_the_servers_ca_file(tmp_path: Path) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        tls_self_signed=True,
        enroll_secret="tls-enroll-secret",
        admin_email="admin@example.com",
        admin_password="admin-password-1",
        distributed_hold=1.0,
    )
    with running_server(settings) as server:
        cert = settings.data_dir / "fleetwatch-cert.pem"
        ok = simulate(
            "--server", server.url, "--enroll-secret", "tls-enroll-secret", "--hosts", "2",
            "--duration", "3", "--start-period", "0", "--ca-file", str(cert),
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert "stopped: 2/2 enrolled" in ok.stdout
        assert len(hosts_of(server)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "0"], "--hosts must be at least 1"),
        (["--server", "ftp://x"], "must start with http:// or https://"),
        (["--platforms", "beos=2"], "unknown platform 'beos'"),
        (["--offline-fraction", "1.5"], "offline-fraction must be between 0 and 1"),
        (["--query-fail-prob", "-1"], "query-fail-prob must be between 0 and 1"),
        (["--query-delay", "-2"], "query-delay must be a positive number"),
        (["--distributed-interval", "0"], "--distributed-interval must be a positive"),
        (["--host-identifier", "mac"], "--host-identifier must be one of"),
        (["--ca-file", "/no/such.pem", "--server", "https://x"], "does not exist"),
        (["--ca-file", "/etc/hostname"], "needs an https:// server URL"),
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    _register()
    base = {"--server": "http://127.0.0.1:9", "--enroll-secret": "s"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["simulate", *[part for pair in base.items() for part in pair]]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.output
