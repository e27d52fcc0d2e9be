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


def test_outbound_allow_from_each_source_and_a_bad_cidr_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().outbound_networks == ()  # nothing inside is allowed by default
    listed = write(tmp_path / "list.toml", 'outbound_allow = ["10.0.0.0/8", "::1"]\n')
    settings, _ = load_settings({}, listed)
    assert settings.outbound_allow == "10.0.0.0/8,::1/128"
    assert [str(n) for n in settings.outbound_networks] == ["10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("FLEETWATCH_OUTBOUND_ALLOW", "127.0.0.0/8, ::1/128")
    settings, sources = load_settings({})
    assert settings.outbound_allow == "127.0.0.0/8,::1/128" and sources["outbound_allow"] == "env"
    with pytest.raises(SettingsError) as caught:
        load_settings({"outbound_allow": "127.0.0.0/8,10.0.0.1/8"})
    message = str(caught.value)
    assert "--outbound-allow / FLEETWATCH_OUTBOUND_ALLOW" in message
    assert "'10.0.0.1/8' is not a CIDR network" in message and "host bits set" in message


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


def test_destinations_from_toml_tables_flag_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "fw.toml",
        "[fleetwatch]\nport = 9100\n\n"
        '[destinations.siem]\ntype = "splunk_hec"\n'
        'url = "https://splunk.example:8088/services/collector/event"\n'
        'token = "hec"\nbatch_size = 50\ninterval = 2.5\n\n'
        '[destinations.archive]\ntype = "file"\npath = "/var/log/fleetwatch/rows.log"\n',
    )
    settings, sources = load_settings({}, config)
    assert settings.port == 9100 and sources["destinations"] == "file"
    siem = settings.destinations["siem"]
    assert (siem.type, siem.token, siem.batch_size, siem.interval) == ("splunk_hec", "hec", 50, 2.5)
    assert settings.destinations["archive"].path == Path("/var/log/fleetwatch/rows.log")
    flag = '{"es": {"type": "elasticsearch", "url": "https://es.example:9200", "index": "fw"}}'
    settings, _ = load_settings({"destinations": flag}, config)
    assert list(settings.destinations) == ["es"]
    monkeypatch.setenv("FLEETWATCH_DESTINATIONS", flag)
    settings, sources = load_settings({}, None)
    assert settings.destinations["es"].index == "fw" and sources["destinations"] == "env"


@pytest.mark.parametrize(
    "table, message",
    [
        ('[destinations.siem]\ntype = "splunk_hec"\n', 'needs url = "https://..."'),
        ('[destinations.es]\ntype = "elasticsearch"\nurl = "https://es"\n', "needs index"),
        ('[destinations.f]\ntype = "file"\n', "needs path"),
        ('[destinations.x]\ntype = "kafka"\nurl = "https://k"\n', "splunk_hec"),
        ('[destinations.x]\ntype = "http"\nurl = "ftp://k"\n', "https?://"),
        ('[destinations.x]\ntype = "http"\nurl = "https://k"\nbatch = 5\n', "batch"),
        ('[destinations."a b"]\ntype = "http"\nurl = "https://k"\n', "letters, digits"),
        ('[destinations.log_forward_url]\ntype = "http"\nurl = "https://k"\n', "is taken"),
    ],
)
def test_bad_destination_tables_are_named(tmp_path: Path, table: str, message: str) -> None:
    config = write(tmp_path / "fw.toml", table)
    with pytest.raises(SettingsError, match="destinations") as caught:
        load_settings({}, config)
    assert message in str(caught.value)
