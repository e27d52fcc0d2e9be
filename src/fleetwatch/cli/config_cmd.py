"""`fleetwatch config show`: the effective settings, with secrets masked.

The output is TOML, one setting per line with where its value came from (flag, env, file,
default), so it can be saved and edited into a config file. Unset settings are comments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer

from fleetwatch.cli.root import app
from fleetwatch.cli.settings_options import settings_flags_with_sources
from fleetwatch.config import Settings

config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")

#: Settings whose values are secrets: shown as `***`.
SECRET_FIELDS = frozenset({"enroll_secret", "admin_password", "metrics_token"})
#: Settings holding URLs whose password is masked.
URL_FIELDS = frozenset({"database_url", "redis_url", "log_forward_url"})
MASK = "***"


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return MASK  # unparseable: it may hold anything
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[1]}"))


def masked_value(name: str, value: Any) -> Any:
    """A setting's value as it may be shown: secrets masked."""
    if value is None:
        return None
    if name in SECRET_FIELDS:
        return MASK
    if name in URL_FIELDS:
        return mask_url(str(value))
    if name == "destinations":
        # JSON, which --destinations and FLEETWATCH_DESTINATIONS take back; tokens masked
        shown = {
            key: {
                k: MASK if k == "token" and v else mask_url(v) if k == "url" and v else v
                for k, v in config.model_dump(mode="json").items()
            }
            for key, config in value.items()
        }
        return json.dumps(shown, sort_keys=True)
    if isinstance(value, Path):
        return str(value)
    return value


def render(settings: Settings, sources: dict[str, str]) -> str:
    """The TOML text `config show` prints."""
    lines = []
    for name in Settings.model_fields:
        value = masked_value(name, getattr(settings, name))
        source = sources.get(name, "default")
        if value is None:
            lines.append(f"# {name} = (unset)  # {source}")
        else:
            lines.append(f"{name} = {_toml(value)}  # {source}")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _show(settings: Settings, sources: dict[str, str]) -> None:
    """Print the effective settings (flags > FLEETWATCH_* > --config file > defaults).

    Secrets are masked. Takes the same flags as `fleetwatch serve`.
    """
    typer.echo(render(settings, sources))


config_app.command("show")(settings_flags_with_sources(_show))
