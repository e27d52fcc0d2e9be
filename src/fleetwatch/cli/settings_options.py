"""Settings for the commands that start a server: from flags, FLEETWATCH_* variables and a
TOML file, in that order of precedence over the defaults.

`settings_flags` gives a command one option per Settings field (generated from the model,
so a new setting gets its flag without touching the commands) plus `--config PATH`; the
file can also be named by FLEETWATCH_CONFIG. Its keys are the setting names (`port = 8412`,
`distributed_hold = 5.0`; dashes work too), optionally under a `[fleetwatch]` table. A
wrong setting, an unknown key or an unreadable file stops start-up with a message naming it
and where it came from.
"""

from __future__ import annotations

import ast
import inspect
import os
import tomllib
import types
import typing
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import ValidationError

from fleetwatch.config import Settings

#: The variable naming the config file when --config is not given.
CONFIG_ENV = "FLEETWATCH_CONFIG"


class SettingsError(Exception):
    """Settings that cannot be used; the message names each wrong one and its source."""


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return "FLEETWATCH_" + field.upper()


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file, keyed by field name; SettingsError names what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise SettingsError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("fleetwatch")
    if isinstance(section, dict) and all(k in ("fleetwatch", "destinations") for k in data):
        # [fleetwatch] settings beside [destinations.NAME] tables
        data = {**section, **{k: v for k, v in data.items() if k != "fleetwatch"}}
    values = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(k for k in values if k not in Settings.model_fields)
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            "`fleetwatch config show` lists the settings"
        )
    return values


def env_fields() -> set[str]:
    """The settings given by FLEETWATCH_* variables (names are case-insensitive)."""
    present = {k.upper() for k in os.environ}
    return {name for name in Settings.model_fields if env_name(name) in present}


def config_path(config: Path | None) -> Path | None:
    """--config, else FLEETWATCH_CONFIG, else none."""
    if config is not None:
        return config
    value = os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def load_settings(
    flags: dict[str, Any], config: Path | None = None
) -> tuple[Settings, dict[str, str]]:
    """Settings from flags > FLEETWATCH_* > TOML file > defaults, and each field's source.

    Sources are `flag`, `env`, `file` or `default`. Raises SettingsError.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    path = config_path(config)
    from_file = read_config_file(path) if path is not None else {}
    from_env = env_fields() - given.keys()
    file_values = {k: v for k, v in from_file.items() if k not in given and k not in from_env}
    sources = {name: "default" for name in Settings.model_fields}
    sources.update({k: "file" for k in file_values})
    sources.update({k: "env" for k in from_env})
    sources.update({k: "flag" for k in given})
    try:
        # Init values win over the environment, so only the file values the environment
        # does not override are passed with the flags.
        settings = Settings(**{**file_values, **given})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            where = f"{flag_name(name)} / {env_name(name)}"
            source = sources.get(name, "default")
            if source == "file":
                where += f" / {name} in {path}"
            lines.append(f"  {where}: {err['msg']} (value from {_SOURCE_WORDS[source]})")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from exc
    return settings, sources


_SOURCE_WORDS = {
    "flag": "the command line",
    "env": "the environment",
    "file": "the config file",
    "default": "the default",
}


def build_settings(config: Path | None = None, **flags: Any) -> Settings:
    """Settings for a command; a wrong setting prints a message naming it and exits 2."""
    return build_settings_with_sources(config, **flags)[0]


def build_settings_with_sources(
    config: Path | None = None, **flags: Any
) -> tuple[Settings, dict[str, str]]:
    """`build_settings`, and where each value came from (see `load_settings`)."""
    try:
        return load_settings(flags, config)
    except SettingsError as exc:
        typer.echo(f"fleetwatch: {exc}", err=True)
        raise typer.Exit(2) from exc


@cache
def field_docs() -> dict[str, str]:
    """Each setting's `#:` comment in config.py (the one place settings are described)."""
    import fleetwatch.config as config_module

    docs: dict[str, str] = {}
    try:
        source = inspect.getsource(config_module)
    except OSError:  # no source (a zipped install): no help text, nothing else lost
        return docs
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                comment.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            if comment:
                docs[node.target.id] = " ".join(comment)
    return docs


#: Help for the settings config.py does not comment (the obvious ones).
BASIC_HELP = {
    "host": "Address to listen on.",
    "port": "Port to listen on.",
    "data_dir": "Where the SQLite database and certificates live.",
    "database_url": "postgresql://... to use PostgreSQL instead of SQLite.",
    "redis_url": "redis://... for a multi-node cluster.",
    "tls_cert": "PEM certificate (chain) to serve HTTPS with.",
    "tls_key": "PEM private key of --tls-cert.",
    "tls_self_signed": "Make a self-signed certificate in the data directory; serve HTTPS.",
    "log_level": "debug, info, warning, error or critical.",
    "enroll_secret": "A global enroll secret to add at start-up.",
    "admin_email": "Email of the first admin, created on a new database.",
    "admin_password": "Password of that first admin.",
}


def _flag_type(annotation: Any) -> Any:
    """The type a flag is parsed as (pydantic validates the value afterwards)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0] if len(args) == 1 else str
    if typing.get_origin(annotation) is Literal:
        return str
    if annotation in (bool, int, float, Path):
        return annotation
    return str


def _option(name: str) -> tuple[Any, Any]:
    field = Settings.model_fields[name]
    kind = _flag_type(field.annotation)
    help_text = field_docs().get(name) or BASIC_HELP.get(name, "")
    default = field.default
    where = f"env {env_name(name)}"
    if default is not None and not isinstance(default, bool):
        where = f"default {default}; {where}"
    help_text += f" ({where})"
    decls = [flag_name(name)]
    if kind is bool:
        decls = [f"{flag_name(name)}/--no-{name.replace('_', '-')}"]
    return kind | None, typer.Option(None, *decls, help=help_text.strip(), show_default=False)


ConfigOpt = typer.Option(
    None,
    "--config",
    help=f"A TOML file of settings (flags and FLEETWATCH_* variables win; env {CONFIG_ENV}).",
    show_default=False,
)


def settings_flags(command: Callable[[Settings], None]) -> Callable[..., None]:
    """A typer command taking every setting as a flag plus --config, that calls `command`
    with the Settings they make (see the module docstring)."""
    return settings_flags_with_sources(lambda settings, _sources: command(settings), command)


def settings_flags_with_sources(
    command: Callable[[Settings, dict[str, str]], None],
    named_after: Callable[..., Any] | None = None,
) -> Callable[..., None]:
    """`settings_flags` for a command that also wants each setting's source."""
    named_after = named_after or command

    def run(**kwargs: Any) -> None:
        config = kwargs.pop("config", None)
        command(*build_settings_with_sources(config, **kwargs))

    params = [
        inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=ConfigOpt, annotation=Path | None
        )
    ]
    for name in Settings.model_fields:
        annotation, option = _option(name)
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
            )
        )
    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__name__ = named_after.__name__
    run.__doc__ = named_after.__doc__
    return run


DataDirOpt = typer.Option(None, "--data-dir", help="Where the SQLite database and certs live.")
DatabaseUrlOpt = typer.Option(
    None, "--database-url", help="postgresql://... to use PostgreSQL instead of SQLite."
)

__all__ = [
    "CONFIG_ENV",
    "ConfigOpt",
    "DataDirOpt",
    "DatabaseUrlOpt",
    "Path",
    "SettingsError",
    "build_settings",
    "build_settings_with_sources",
    "field_docs",
    "load_settings",
    "settings_flags",
    "settings_flags_with_sources",
]
