"""`fleetwatch serve` as a subprocess: starts, answers /healthz, TLS path printed, and a
wrong setting stops start-up with a message naming it."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.services import free_port


def test_serve_starts_and_stops(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FLEETWATCH_ENROLL_SECRET": "serve-enroll-secret",
        "FLEETWATCH_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetwatch",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--tls-self-signed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        cert = tmp_path / "fleetwatch-cert.pem"
        deadline = time.monotonic() + 60
        while True:
            try:
                verify = ssl.create_default_context(cafile=str(cert))
                if httpx.get(f"https://localhost:{port}/healthz", verify=verify).is_success:
                    break
            except (httpx.HTTPError, FileNotFoundError, ssl.SSLError):
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.2)
        enroll = httpx.post(
            f"https://localhost:{port}/api/v1/osquery/enroll",
            json={"enroll_secret": "serve-enroll-secret", "host_identifier": "h"},
            verify=verify,
        )
        assert "node_key" in enroll.json()
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM)
    assert f"--tls_server_certs: {cert}" in output


def test_wrong_setting_names_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetwatch",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--distributed-hold",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--distributed-hold / FLEETWATCH_DISTRIBUTED_HOLD" in result.stderr
    assert "osquery gives up" in result.stderr
    env = {**os.environ, "FLEETWATCH_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 2 and "FLEETWATCH_PORT" in result.stderr
