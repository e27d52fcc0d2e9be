"""The README tells the truth: generated sections are fresh, every endpoint and command is
documented."""

from __future__ import annotations

import re
from pathlib import Path

from fleetwatch.app import create_app
from fleetwatch.config import Settings
from tests.readme_sections import README, render

#: Routes that are not part of the API a user calls.
UNDOCUMENTED = {"/docs/oauth2-redirect", "/redoc", "/openapi.json", "/docs"}
WEBSOCKETS = [
    "/api/v1/fleet/results/websocket",
    "/core/local-query-tasks/{id}/stream",
]


def normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_generated_sections_are_fresh() -> None:
    current = README.read_text()
    assert render(current) == current, "run: python -m tests.readme_sections --write"


def test_every_endpoint_is_in_the_readme(tmp_path: Path) -> None:
    readme = normalise(README.read_text())
    app = create_app(Settings(data_dir=tmp_path))
    paths = set(app.openapi()["paths"]) - UNDOCUMENTED
    paths |= set(WEBSOCKETS)
    missing = sorted(
        p
        for p in paths
        if normalise(p) not in readme and not p.startswith(("/ui", "/static", "/api/osquery/"))
    )
    assert not missing, f"undocumented endpoints: {missing}"


def test_every_command_is_in_the_readme() -> None:
    import typer.main

    from fleetwatch.cli import _register, app

    _register()
    command = typer.main.get_command(app)
    readme = README.read_text()
    for name in command.commands:  # type: ignore[attr-defined]
        assert f"fleetwatch {name}" in readme or f"│ {name} " in readme, name
