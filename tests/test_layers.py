"""The package's import structure: no cycles, and nothing below the HTTP layer imports it.

Read from the source (every import statement, at any depth, `TYPE_CHECKING` blocks
included), so an import moved into a function to dodge a cycle still counts as one.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API = "cmp.api"
# The composition root wires the HTTP layer into the app: the one module above it.
ABOVE_API = {"cmp.app"}


def modules(package: Path = ROOT / "cmp") -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The modules of the package that `name` (at `path`) imports."""

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {owner(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else owner(base))
    return {t for t in targets if t is not None and t != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found_in_a_graph_that_has_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    package = tmp_path / "cmp"
    (package / "api").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "api" / "__init__.py").write_text("")
    (package / "api" / "routes.py").write_text("def f():\n    from . import ops\n")
    (package / "api" / "ops.py").write_text("from cmp.api.routes import f\n")
    known = modules(package)
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert graph["cmp.api.routes"] == {"cmp.api.ops"}
    assert cycles(graph) == [["cmp.api.ops", "cmp.api.routes"]]


def test_no_import_cycle_in_cmp() -> None:
    graph = import_graph()
    assert {"cmp.api.access", "cmp.api.ops"} <= graph["cmp.api.routes"]  # the walk saw it
    assert cycles(graph) == []


def test_nothing_below_the_http_layer_imports_it() -> None:
    offenders = {
        name: sorted(t for t in targets if t == API or t.startswith(f"{API}."))
        for name, targets in import_graph().items()
        if not (name == API or name.startswith(f"{API}.")) and name not in ABOVE_API
    }
    assert {name: found for name, found in offenders.items() if found} == {}
