"""Import shapes that import-linter cannot state: what must be lazy, and no cycles at import time.

import-linter (scripts/check.sh) sees every import, wherever it stands; these tests look
at where: a module-level import runs when the module loads, one inside a function only
when it is called.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("classifier", "training", "cxrsite")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, module: str) -> tuple[set[str], set[str]]:
    """(module-level, function-level) imported module names."""
    top: set[str] = set()
    lazy: set[str] = set()

    def names(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
        return [base] + [f"{base}.{alias.name}" for alias in node.names]

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            # Column 0 runs at import time; an indented import is in a function, or under
            # ``if TYPE_CHECKING:``, which never runs.
            (top if node.col_offset == 0 else lazy).update(names(node))
    return top, lazy


def _graph() -> dict[str, tuple[set[str], set[str]]]:
    graph = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            module = _module(path)
            graph[module] = _imports(ast.parse(path.read_text()), module)
    return graph


def _project(names: set[str], graph: dict[str, object]) -> set[str]:
    return {name for name in names if name in graph}


def test_services_and_tasks_import_each_other_only_inside_functions() -> None:
    graph = _graph()
    for module, (top, _lazy) in graph.items():
        if ".services" in module:
            assert not {m for m in top if ".tasks" in m or m.endswith(".tasks")}, module
        if module.endswith(".tasks") or ".tasks." in module:
            assert not {m for m in top if ".services" in m}, module


def test_no_import_cycle_at_module_level() -> None:
    graph = _graph()
    edges = {module: _project(top, graph) - {module} for module, (top, _lazy) in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges[module]:
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
