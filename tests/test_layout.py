"""The package's layers: every import points down, and no module imports itself back.

Layers, lowest first (``mixedjax/<layer>/``); a module may import from its own layer or a
lower one, never from a higher one, whether at the top of the file or inside a function.
Within a layer the imports between modules form no cycle.
"""

import ast
import functools
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mixedjax"

LAYERS = [
    "core",
    "families",
    "_jaxconfig",
    "spec",
    "design",
    "engines",
    "fit",
    "inference",
    "display",
    "results",
    "batch",
    "model",
    "functional",
    "cli",
    "__main__",
    "__init__",
]


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "datasets" not in p.parts}


def _imports(path: pathlib.Path, modules) -> set[str]:
    """Every mixedjax module imported anywhere in ``path`` (top level or lazily)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("mixedjax"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mixedjax"))
    return {m for m in out if m in modules}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "__init__")


@functools.cache
def _graph_cached():
    modules = _modules()
    return {m: frozenset(_imports(p, modules) - {m}) for m, p in modules.items()}


def _graph() -> dict[str, set[str]]:
    return {m: set(d) for m, d in _graph_cached().items()}


def test_every_module_has_a_layer():
    for m in _modules():
        if m != "mixedjax":
            assert m.split(".")[1] in LAYERS, f"{m} is in no layer of tests/test_layout.py"


@pytest.mark.parametrize("module", sorted(_graph()))
def test_imports_point_down(module):
    graph = _graph()
    up = [d for d in graph[module] if d != "mixedjax" and _layer(d) > _layer(module)]
    assert not up, f"{module} imports from a higher layer: {sorted(up)}"


def test_no_import_cycle():
    graph = _graph()
    graph.pop("mixedjax")
    for deps in graph.values():
        deps.discard("mixedjax")
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
