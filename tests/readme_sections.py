"""The README's generated sections: the settings table and the command-line help.

`python -m tests.readme_sections --write` regenerates them; tests/test_docs.py fails when
they are stale, so the README cannot drift from the code.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable
from pathlib import Path

from fleetwatch.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIG = ROOT / "src" / "fleetwatch" / "config.py"
SECRET_FIELDS = {"enroll_secret", "admin_password", "metrics_token"}


def field_comments() -> dict[str, str]:
    """The `#:` comment above each Settings field in config.py."""
    source = CONFIG.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    comment: list[str] = []
                    line = item.lineno - 2
                    while line >= 0 and lines[line].strip().startswith("#:"):
                        comment.insert(0, lines[line].strip()[2:].strip())
                        line -= 1
                    out[item.target.id] = " ".join(comment)
    return out


def serve_flags() -> set[str]:
    """The option names `fleetwatch serve` accepts."""
    import typer.main

    from fleetwatch.cli import _register, app

    _register()
    command = typer.main.get_command(app)
    serve = command.commands["serve"]  # type: ignore[attr-defined]
    return {opt for param in serve.params for opt in param.opts}


def settings_table() -> str:
    comments = field_comments()
    flags = serve_flags()
    rows = ["| `serve` flag | variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default is None or default == "" else f"`{default}`"
        if name in SECRET_FIELDS:
            shown = ""
        flag = "--" + name.replace("_", "-")
        shown_flag = f"`{flag}`" if flag in flags else ""
        rows.append(
            f"| {shown_flag} | `FLEETWATCH_{name.upper()}` | {shown} | {comments.get(name, '')} |"
        )
    return "\n".join(rows)


def cli_help() -> str:
    from typer.testing import CliRunner

    from fleetwatch.cli import _register, app

    _register()
    runner = CliRunner()
    result = runner.invoke(
        app, ["--help"], env={"COLUMNS": "90", "TERM": "dumb"}, terminal_width=90
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    return "```\n" + text.rstrip() + "\n```"


SECTIONS = {"settings": settings_table, "cli": cli_help}


def _replacement(content: str) -> Callable[[re.Match[str]], str]:
    return lambda m: m.group(1) + "\n" + content + "\n" + m.group(2)


def render(readme: str) -> str:
    """The README with every generated section brought up to date."""
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->).*?(<!-- {name}:end -->)", re.DOTALL)
        readme = pattern.sub(_replacement(make()), readme)
    return readme


if __name__ == "__main__":
    current = README.read_text()
    fresh = render(current)
    if "--write" in sys.argv:
        README.write_text(fresh)
    elif fresh != current:
        print("README.md is stale: run python -m tests.readme_sections --write")
        sys.exit(1)
