"""Config `options` change runtime flags only, with osquery's value parsing."""

from __future__ import annotations

from fleetwatch.sim.flags import AgentFlags


def test_runtime_options_apply_and_cli_only_ones_are_ignored() -> None:
    flags, ignored = AgentFlags().with_options(
        {
            "distributed_interval": "3",
            "logger_tls_period": 7,
            "logger_tls_compress": "true",
            "pack_delimiter": "/",
            "config_refresh": 5,
            "tls_hostname": "elsewhere:443",
            "no_such_flag": 1,
        }
    )
    assert flags.distributed_interval == 3.0
    assert flags.logger_tls_period == 7.0
    assert flags.logger_tls_compress is True
    assert flags.pack_delimiter == "/"
    assert flags.config_refresh == AgentFlags().config_refresh
    assert sorted(ignored) == ["config_refresh", "no_such_flag", "tls_hostname"]


def test_values_of_the_wrong_type_are_ignored() -> None:
    flags, ignored = AgentFlags().with_options(
        {"distributed_interval": "soon", "logger_tls_max_lines": -5, "host_identifier": 3}
    )
    assert flags == AgentFlags()
    assert sorted(ignored) == ["distributed_interval", "host_identifier", "logger_tls_max_lines"]


def test_flags_as_osquery_flags_strings() -> None:
    values = AgentFlags(distributed_interval=2).as_strings()
    assert values["distributed_interval"] == "2"
    assert values["logger_tls_compress"] == "false"
    assert values["config_tls_refresh"] == values["config_refresh"] == "60"
