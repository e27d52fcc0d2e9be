"""`fleetwatch config show`: the effective settings with their sources, secrets masked."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from fleetwatch.cli import _register, app
from fleetwatch.cli.config_cmd import mask_url
from fleetwatch.config import Settings


def show(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    _register()
    result = CliRunner().invoke(app, ["config", "show", *args], env=env)
    return result.exit_code, result.output


def test_show_masks_secrets_and_tells_sources(tmp_path: Path) -> None:
    config = tmp_path / "fw.toml"
    config.write_text(
        'enroll_secret = "file-secret-Zq81"\n'
        'database_url = "postgresql://fleet:db-pass-Zq81@db.example/fleet"\n'
        "distributed_hold = 4.0\n"
        '[destinations.siem]\ntype = "http"\nurl = "https://u:url-pass-Zq81@siem.example/in"\n'
        'token = "hec-token-Zq81"\n',
        encoding="utf-8",
    )
    code, out = show(
        "--config",
        str(config),
        "--admin-password",
        "flag-pass-Zq81",
        env={"FLEETWATCH_METRICS_TOKEN": "env-token-Zq81", "FLEETWATCH_PORT": "9200"},
    )
    assert code == 0, out
    assert "Zq81" not in out
    assert 'enroll_secret = "***"  # file' in out
    assert 'admin_password = "***"  # flag' in out
    assert 'metrics_token = "***"  # env' in out
    assert 'database_url = "postgresql://fleet:***@db.example/fleet"  # file' in out
    assert "port = 9200  # env" in out
    assert "distributed_hold = 4.0  # file" in out
    assert "# redis_url = (unset)  # default" in out
    # The output is a valid config file naming every setting.
    parsed = tomllib.loads(out)
    unset = {line.split()[1] for line in out.splitlines() if line.startswith("# ")}
    assert set(parsed) | unset == set(Settings.model_fields)
    assert parsed["port"] == 9200
    # destinations as JSON (as --destinations takes it), tokens and URL passwords masked
    siem = Settings(destinations=parsed["destinations"]).destinations["siem"]
    assert (siem.token, siem.url) == ("***", "https://u:***@siem.example/in")


def test_show_refuses_a_wrong_setting_naming_it() -> None:
    code, out = show(env={"FLEETWATCH_LOG_FORWARD_URL": "ftp://example"})
    assert code == 2
    assert "--log-forward-url / FLEETWATCH_LOG_FORWARD_URL" in out
    assert "environment" in out


def test_mask_url() -> None:
    assert mask_url("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("http://u:p@h:8080/x?y=1") == "http://u:***@h:8080/x?y=1"
