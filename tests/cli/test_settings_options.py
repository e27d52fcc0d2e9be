"""Settings from flags, FLEETWATCH_* variables and a TOML file: precedence, every field has a
flag, and a wrong value, unknown key or bad file is refused naming it and its source."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import app
from fleetwatch.cli.settings_options import (
    SettingsError,
    field_docs,
    load_settings,
    read_config_file,
    settings_flags,
)
from fleetwatch.config import Settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_flags_over_env_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "fw.toml",
        'port = 9001\ndistributed_hold = 3.5\nlog-level = "debug"\nhost = "0.0.0.0"\n',
    )
    monkeypatch.setenv("FLEETWATCH_PORT", "9002")
    monkeypatch.setenv("fleetwatch_distributed_hold", "4.5")  # names are case-insensitive
    settings, sources = load_settings({"port": 9003, "host": None}, config)
    assert settings.port == 9003 and sources["port"] == "flag"
    assert settings.distributed_hold == 4.5 and sources["distributed_hold"] == "env"
    assert settings.log_level == "debug" and sources["log_level"] == "file"
    assert settings.host == "0.0.0.0" and sources["host"] == "file"  # a None flag is not given
    assert settings.webhook_timeout == 10.0 and sources["webhook_timeout"] == "default"


def test_config_file_from_environment_and_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "fw.toml", "[fleetwatch]\nsse_keepalive = 2.0\n")
    monkeypatch.setenv("FLEETWATCH_CONFIG", str(config))
    settings, sources = load_settings({})
    assert settings.sse_keepalive == 2.0 and sources["sse_keepalive"] == "file"


def test_bad_files_and_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")
    with pytest.raises(SettingsError, match="not valid TOML"):
        read_config_file(write(tmp_path / "bad.toml", "port = = 1"))
    with pytest.raises(SettingsError, match="unknown setting.*colour"):
        read_config_file(write(tmp_path / "unknown.toml", "colour = 'red'\nport = 1\n"))
    config = write(tmp_path / "hold.toml", "distributed_hold = 20\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({}, config)
    message = str(caught.value)
    assert "--distributed-hold / FLEETWATCH_DISTRIBUTED_HOLD" in message
    assert f"distributed_hold in {config}" in message and "config file" in message
    with pytest.raises(SettingsError, match="FLEETWATCH_PORT.*command line"):
        load_settings({"port": 70000})


def test_every_setting_is_a_flag_and_documented() -> None:
    seen: list[Settings] = []
    command = settings_flags(seen.append)
    import inspect

    names = set(inspect.signature(command).parameters)
    assert names == set(Settings.model_fields) | {"config"}
    docs = field_docs()
    assert "distributed_hold" in docs and "long-poll" in docs["distributed_hold"]


def test_serve_help_lists_every_setting() -> None:
    from fleetwatch.cli import _register

    _register()
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in result.output
    assert "--config" in result.output
