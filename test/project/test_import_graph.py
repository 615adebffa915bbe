"""The import graph of ``ate_ros``, read statically with ``ast``: no circles, no upward imports.

Every ``import``/``from ... import`` of an ``ate_ros`` module counts, at module level or inside a
function (a lazy import is still a dependency), except under ``if TYPE_CHECKING:``. An import of
a package counts as an import of its ``__init__``; ``from pkg import name`` counts as an import of
``pkg.name`` when that is a module. The layers: ``core`` imports only ``core``; ``ros`` imports
``core`` and ``ros``; ``nodes`` imports ``core``, ``ros``, ``nodes``; ``commands`` may import
all. Inside ``core``, ``data`` (read by training, alignment, steering, simulation) imports none
of those packages.
A package's ``__init__`` re-exporting its own modules is not a circle (the submodule importing
its package's ``__init__`` is the edge that is reported).
"""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import ROOT

PACKAGE = ROOT / "ate_ros"
LAYERS = {"core": {"core"}, "ros": {"core", "ros"}, "nodes": {"core", "ros", "nodes"}}
CORE_BELOW = {"data": {"align", "steer", "deploy", "execution", "sim", "training", "viz"}}
"""Inside core: the packages each core package must not import (data is read by the others)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The ``ate_ros`` modules ``tree`` imports."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    names = set(mods)
    return {name: _imports(ast.parse(path.read_text(), str(path)), name,
                           path.name == "__init__.py", names)
            for name, path in mods.items()}


def _edges_without_own_init_reexports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop ``pkg.__init__ -> pkg.sub`` edges (a package exporting its own modules)."""
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_graph_is_read():
    graph = import_graph()
    assert "ate_ros.core.embodiment" in graph["ate_ros.core.execution.scheduler"]
    assert "ate_ros.ros.params" in graph["ate_ros.nodes.executor_node"]
    # A cycle built by hand is found: the checker is not vacuous.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    cycles = _cycles(_edges_without_own_init_reexports(import_graph()))
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_upward_imports():
    offenders = []
    for module, deps in import_graph().items():
        layer = module.split(".")[1] if module.count(".") else ""
        allowed = LAYERS.get(layer)
        if allowed is None:
            continue
        for dep in sorted(deps):
            dep_layer = dep.split(".")[1] if dep.count(".") else ""
            if dep_layer in {"core", "ros", "nodes", "commands"} and dep_layer not in allowed:
                offenders.append(f"{module} -> {dep}")
            parts, dep_parts = module.split("."), dep.split(".")
            if layer == "core" == dep_layer and len(parts) > 2 and len(dep_parts) > 2 and \
                    dep_parts[2] in CORE_BELOW.get(parts[2], set()):
                offenders.append(f"{module} -> {dep}")
    assert not offenders, "upward imports:\n" + "\n".join(offenders)
