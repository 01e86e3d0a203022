"""dexar_core's and dexar_plugins' modules import one another without a cycle.

The graph is read from the source, not from ``sys.modules``: every ``import`` at module
level and inside functions (a lazy import is still a dependency), except those under
``if TYPE_CHECKING:``, which never run. ``from package import name`` is an edge to the
submodule ``package.name`` when there is one, else to the package itself. Imports by a
computed name (``importlib.import_module(name)`` in registries and lazy re-exports) are
not edges: nothing in the source says where they go.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dexar_core", "dexar_plugins")


def module_name(path: Path) -> str:
    """The dotted name of a source file under the repository root."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the two packages, by dotted name."""
    paths = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    return {module_name(path): path for path in paths}


def is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module that can run, at any depth."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and is_type_checking(node.test):
            # The else branch of ``if TYPE_CHECKING:`` is what runs.
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the two packages that module ``name`` imports."""
    targets: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in runtime_imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            # A relative import counts from the module's package (the package itself for
            # an __init__), one level up per extra dot.
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in modules else source)
    return {target for target in targets if target in modules and target != name}


def import_graph() -> dict[str, set[str]]:
    """The import graph: module -> the modules of the two packages it imports."""
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module.

    Tarjan's algorithm finds the components; a breadth-first search inside each one gives
    a shortest cycle through its first module, so the failure names real import lines.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    found = []
    for component in components:
        if len(component) < 2:
            continue
        start = min(component)
        parents: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parents:
            following = []
            for node in frontier:
                for target in sorted(graph[node] & component):
                    if target not in parents:
                        parents[target] = node
                        following.append(target)
            frontier = following
        path = [start]
        while parents[path[-1]] != start:
            path.append(parents[path[-1]])
        found.append([start, *reversed(path[1:]), start])
    return found


def test_the_graph_sees_the_imports_it_must():
    graph = import_graph()
    # Module-level, relative and function-level imports all make edges; a wrong parser
    # would pass the cycle test on an empty graph.
    assert "dexar_core.errors" in graph["dexar_core.values"]
    assert "dexar_core.errors" in graph["dexar_plugins.registry"]
    # imported inside check_gradients_equal_reference only
    assert "dexar_core.engine" in graph["dexar_plugins.testing.explanation_checks"]
    assert sum(len(targets) for targets in graph.values()) > 50


def test_cycles_are_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from dexar_core import values", {"dexar_core.values"}),
        ("from dexar_core.values import Grid", {"dexar_core.values"}),
        ("from . import errors", {"dexar_core.errors"}),
        ("from .errors import DexarError", {"dexar_core.errors"}),
        ("import dexar_core.errors", {"dexar_core.errors"}),
        ("def f():\n    from dexar_core import errors", {"dexar_core.errors"}),
        ("if TYPE_CHECKING:\n    import dexar_core.errors", set()),
        ("if TYPE_CHECKING:\n    pass\nelse:\n    import dexar_core.errors", {"dexar_core.errors"}),
        ("from dexar_core import explain", {"dexar_core"}),
    ],
)
def test_imports_become_edges(tmp_path, source, expected):
    modules = package_modules()
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imported_modules("dexar_core.probe", path, modules) == expected


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)
