"""`python -m bench [NAME [ARGS...]]`: list the benchmarks, or run one by name.

Each benchmark is a module `bench/bench_<name>.py` with a `main(argv) -> int | None`;
the arguments after the name are passed to it (`python -m bench checkin --help`).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

PREFIX = "bench_"


def available() -> dict[str, str]:
    """Benchmark name -> the first line of its module docstring (read without importing)."""
    found: dict[str, str] = {}
    for module in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if module.name.startswith(PREFIX):
            found[module.name[len(PREFIX) :]] = _summary(module.name)
    return dict(sorted(found.items()))


def _summary(module_name: str) -> str:
    path = Path(__file__).resolve().parent / f"{module_name}.py"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    try:
        doc = ast.get_docstring(ast.parse(text))
    except SyntaxError:
        return "(does not parse)"
    return doc.strip().splitlines()[0] if doc else ""


def run(name: str, argv: Sequence[str]) -> int:
    """Import `bench.bench_<name>` and call its `main(argv)`."""
    module = importlib.import_module(f"bench.{PREFIX}{name}")
    main = cast(Callable[[list[str]], int | None], module.main)
    return main(list(argv)) or 0


def main(argv: Sequence[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m bench NAME [ARGS...]   (python -m bench NAME --help)\n")
        print("benchmarks:")
        width = max((len(n) for n in names), default=0)
        for name, summary in names.items():
            print(f"  {name.ljust(width)}  {summary}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; one of: {', '.join(names)}", file=sys.stderr)
        return 2
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
