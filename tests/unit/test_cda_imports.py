"""The documents package's import graph: module-level imports only, and no cycle between its modules (the builders
take a BuildContext, never the service)."""

from __future__ import annotations

import ast
from pathlib import Path

CDA = Path(__file__).resolve().parents[2] / "agent" / "cda"


def _project_imports(tree: ast.AST) -> list[tuple[ast.stmt, str]]:
    found: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agent"):
            found += [(node, node.module)] + [(node, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names if a.name.startswith("agent")]
    return found


def _graph() -> dict[str, set[str]]:
    modules = {f"agent.cda.{p.stem}": p for p in CDA.glob("*.py")}
    return {name: {target for _, target in _project_imports(ast.parse(path.read_text())) if target in modules}
            - {name} for name, path in modules.items()}


def test_no_function_level_project_import_in_the_documents_package() -> None:
    for path in sorted(CDA.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        nested = [target for node, target in _project_imports(tree) if id(node) not in top]
        assert nested == [], f"{path.name} imports inside a function or block: {nested}"


def test_the_documents_package_has_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert "agent.cda.service" in graph and "agent.cda.builders" in graph["agent.cda.service"]
