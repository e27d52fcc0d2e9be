"""`fleetwatch user` and `fleetwatch secret`, run as a user would (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def fleetwatch(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetwatch", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_user_and_secret_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = fleetwatch(
        "user",
        "create",
        "--email",
        "ops@example.com",
        "--password",
        "password-1",
        "--role",
        "admin",
        data_dir=data,
    )
    assert made.returncode == 0, made.stderr
    assert "created user 1 ops@example.com (admin)" in made.stdout
    dup = fleetwatch(
        "user", "create", "--email", "ops@example.com", "--password", "password-1", data_dir=data
    )
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad_role = fleetwatch(
        "user",
        "create",
        "--email",
        "x@example.com",
        "--password",
        "password-1",
        "--role",
        "root",
        data_dir=data,
    )
    assert bad_role.returncode == 1 and "global_role" in bad_role.stderr
    assert "ops@example.com\tadmin" in fleetwatch("user", "list", data_dir=data).stdout
    generated = fleetwatch("secret", "add", data_dir=data).stdout.strip()
    assert len(generated) == 48
    assert fleetwatch("secret", "add", "chosen-secret", data_dir=data).returncode == 0
    listed = fleetwatch("secret", "list", data_dir=data).stdout.split()
    assert sorted(listed) == sorted([generated, "chosen-secret"])
    assert fleetwatch("secret", "revoke", "chosen-secret", data_dir=data).returncode == 0
    again = fleetwatch("secret", "revoke", "chosen-secret", data_dir=data)
    assert again.returncode == 1 and "no such enroll secret" in again.stderr
