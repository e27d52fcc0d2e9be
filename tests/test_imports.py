"""The house's import rules, read off the source with `ast` (nothing is imported to check).

- No circle between modules, nor between packages (a top-level module such as `config.py` is
  a package of its own here).
- The adapters (`api/`, `web/`, `cli/`, `osquery/`) are imported only by the composition root
  (`app.py`, `server.py`, `__main__.py`) and by other adapters where `ADAPTER_EDGES` says why.
- The index and the query engine know nothing of the domain above them.
- Only `index/` and `query/` read the index's own tables (`documents`, `changes`).
- A name is imported from the module that defines it, not through one that re-exports it
  (a package's `__init__.py` aside).

Every import counts: function-local ones and those under `if TYPE_CHECKING:` too (a circle
hidden from the interpreter is still a circle for the reader).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "fleetwatch"

ADAPTERS = frozenset({"api", "web", "cli", "osquery"})
#: Top-level modules that assemble the adapters into an app and serve it.
COMPOSITION = frozenset({"app", "server", "__main__"})
#: Allowed imports from one adapter into another, with the reason.
ADAPTER_EDGES: Mapping[tuple[str, str], str] = {
    ("web", "api"): "the browser UI signs users in and answers errors exactly as the user API",
}
#: Packages the index and the query engine must not import (DESIGN.md §2).
DOMAIN = frozenset({"fleet", "live", "dispatch", "osquery", "api", "web", "cli", "ops"})
#: The index's own tables, read and written only through `index/` and `query/`.
INDEX_TABLES = frozenset({"documents", "changes"})
#: Modules outside index/ and query/ still reading the index's tables, with the reason.
INDEX_TABLE_READERS: Mapping[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    names: tuple[str, ...]
    line: int


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports() -> Iterator[Import]:
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES:
                        yield Import(module, alias.name, (), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = tuple(alias.name for alias in node.names)
                # `from pkg import submodule` depends on the submodule, not on pkg's face.
                rest = []
                for name in names:
                    if f"{base}.{name}" in MODULES:
                        yield Import(module, f"{base}.{name}", (), node.lineno)
                    else:
                        rest.append(name)
                if rest and base in MODULES:
                    yield Import(module, base, tuple(rest), node.lineno)


IMPORTS = [i for i in _imports() if i.importer != i.imported]


def package_of(module: str) -> str:
    """`api` for `fleetwatch.api.auth`; a top-level module (`config`) is its own package."""
    parts = module.split(".")
    if len(parts) == 1:
        return "(root)"
    return parts[1]


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _explain(component: list[str], edges: list[tuple[str, str, Import]]) -> str:
    members = set(component)
    lines = [f"  {a} -> {b}: {i.importer}:{i.line}" for a, b, i in edges if {a, b} <= members]
    return " <-> ".join(component) + "\n" + "\n".join(sorted(set(lines)))


def test_the_walk_sees_the_package() -> None:
    # A walk that found nothing would pass every rule below.
    assert "fleetwatch.services" in MODULES
    assert "fleetwatch.api.auth" in MODULES
    assert any(i.importer == "fleetwatch.app" and package_of(i.imported) == "api" for i in IMPORTS)


def test_no_circle_between_modules() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        edges[i.importer].add(i.imported)
    labelled = [(i.importer, i.imported, i) for i in IMPORTS]
    circles = [_explain(c, labelled) for c in _cycles(edges)]
    assert not circles, "import circles between modules:\n" + "\n".join(circles)


def _package_imports() -> list[tuple[str, str, Import]]:
    return [
        (package_of(i.importer), package_of(i.imported), i)
        for i in IMPORTS
        if package_of(i.importer) != package_of(i.imported)
    ]


def test_no_circle_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    labelled = _package_imports()
    for a, b, _ in labelled:
        edges[a].add(b)
    circles = [_explain(c, labelled) for c in _cycles(edges)]
    assert not circles, "import circles between packages:\n" + "\n".join(circles)


def test_nothing_below_the_adapters_imports_them() -> None:
    wrong = []
    for importer, imported, i in _package_imports():
        if imported not in ADAPTERS or importer in COMPOSITION:
            continue
        if importer in ADAPTERS and (importer, imported) in ADAPTER_EDGES:
            continue
        wrong.append(f"{i.importer}:{i.line} imports {i.imported}")
    assert not wrong, "imports into the adapters from below (or across):\n" + "\n".join(wrong)


def test_adapter_exceptions_are_still_needed() -> None:
    # A listed exception nobody uses any more would silently allow a new one.
    used = {(a, b) for a, b, _ in _package_imports()}
    assert set(ADAPTER_EDGES) <= used


def test_index_and_query_know_nothing_of_the_domain() -> None:
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for importer, imported, i in _package_imports()
        if importer in {"index", "query", "storage"} and imported in DOMAIN | COMPOSITION
    ]
    assert not wrong, "\n".join(wrong)


#: SQL written by hand over the index's tables (`text("SELECT ... FROM documents")`).
INDEX_TABLE_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(documents|changes)\b", re.IGNORECASE)


def _index_table_uses(module: str, tree: ast.AST) -> list[str]:
    """Where `module` reaches the index's tables other than by importing them by name: as
    attributes of the schema module (`schema.documents`), through the metadata
    (`metadata.tables["documents"]`), or in hand-written SQL."""
    schema_names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "fleetwatch.storage":
            schema_names |= {a.asname or a.name for a in node.names if a.name == "schema"}
        elif isinstance(node, ast.Import):
            schema_names |= {
                a.asname or a.name for a in node.names if a.name == "fleetwatch.storage.schema"
            }
    uses = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in INDEX_TABLES
            and ast.unparse(node.value) in schema_names
        ):
            uses.append(f"{module}:{node.lineno} uses {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value).endswith(".tables")
            and isinstance(node.slice, ast.Constant)
            and node.slice.value in INDEX_TABLES
        ):
            uses.append(f"{module}:{node.lineno} uses {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = INDEX_TABLE_SQL.search(node.value)
            if found:
                uses.append(f"{module}:{node.lineno} has SQL over {found.group(1)}")
    return uses


def test_the_table_check_sees_every_way_in() -> None:
    # A check that recognised none of these would pass every module.
    sample = ast.parse(
        "from fleetwatch.storage import schema as s\n"
        "import fleetwatch.storage.schema\n"
        "a = s.documents\n"
        "b = fleetwatch.storage.schema.changes\n"
        "c = metadata.tables['documents']\n"
        "d = text('select body from documents where kind = :k')\n"
        "e = s.hosts\n"
    )
    assert [line.split(" ", 1)[0] for line in _index_table_uses("m", sample)] == [
        "m:3",
        "m:4",
        "m:5",
        "m:6",
    ]


def _index_table_readers() -> dict[str, list[str]]:
    readers: dict[str, list[str]] = defaultdict(list)
    for i in IMPORTS:
        if i.imported != "fleetwatch.storage.schema":
            continue
        if package_of(i.importer) in {"index", "query", "storage"}:
            continue
        tables = sorted(INDEX_TABLES.intersection(i.names))
        if tables:
            readers[i.importer].append(f"{i.importer}:{i.line} imports {', '.join(tables)}")
    for module, path in MODULES.items():
        if package_of(module) in {"index", "query", "storage"}:
            continue
        uses = _index_table_uses(module, ast.parse(path.read_text(), str(path)))
        if uses:
            readers[module].extend(uses)
    return readers


def test_only_the_index_and_query_engine_read_the_index_tables() -> None:
    readers = _index_table_readers()
    wrong = [
        line
        for module, lines in readers.items()
        if module not in INDEX_TABLE_READERS
        for line in lines
    ]
    assert not wrong, "read documents/changes through index/ or query/ methods:\n" + "\n".join(
        wrong
    )


def test_listed_index_table_readers_still_read_them() -> None:
    # Not parametrized: with no exception listed (today) that would be a skipped test.
    readers = _index_table_readers()
    stale = sorted(module for module in INDEX_TABLE_READERS if module not in readers)
    assert not stale, f"{stale} no longer need their exception: drop it"


def test_no_json_operators_outside_the_engine() -> None:
    # SQLite's json_extract and PostgreSQL's ->> are translated once, in query/sql.py.
    wrong = []
    for module, path in MODULES.items():
        if package_of(module) in {"index", "query", "storage"} or module in INDEX_TABLE_READERS:
            continue
        text = path.read_text()
        if "json_extract" in text or '"->>"' in text:
            wrong.append(module)
    assert not wrong, wrong


def _bound_here(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names a module binds itself at top level, and names it only imports."""
    own: set[str] = set()
    imported: set[str] = set()
    statements: list[ast.stmt] = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.If, ast.Try)):
            statements.extend(node.body + node.orelse)
            statements.extend(node.finalbody if isinstance(node, ast.Try) else [])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            own |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.For, ast.With)):
            own |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            imported |= {a.asname or a.name for a in node.names}
    return own, imported - own


def test_names_are_imported_from_where_they_are_defined() -> None:
    # A module re-exporting what it imports keeps old import paths alive and hides where a
    # name lives; only a package's face (`__init__.py`) lists names of its modules.
    bound = {
        module: _bound_here(ast.parse(path.read_text(), str(path)))
        for module, path in MODULES.items()
        if path.name != "__init__.py"
    }
    wrong = [
        f"{i.importer}:{i.line} imports {name} from {i.imported}, which only imports it"
        for i in IMPORTS
        if i.imported in bound
        for name in i.names
        if name in bound[i.imported][1]
    ]
    assert not wrong, "\n".join(wrong)
