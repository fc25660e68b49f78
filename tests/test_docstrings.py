"""Every public function and class has a docstring with an example (issue: Jupyter and
everyday use, deliverable 5), and the examples run and print what they say."""

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import mixedjax

PACKAGE_DIR = Path(mixedjax.__file__).parent
MODULES = sorted(
    "mixedjax." + m.name
    for m in pkgutil.walk_packages([str(PACKAGE_DIR)])
    if not m.name.startswith("_")
)


def _public_definitions(path: Path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            yield node


def test_public_definitions_have_docstrings_with_examples():
    missing = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in _public_definitions(path):
            doc = ast.get_docstring(node) or ""
            if ">>>" not in doc:
                where = path.relative_to(PACKAGE_DIR.parent)
                missing.append(f"{where}:{node.lineno} {node.name}")
    assert not missing, "public definitions without a docstring example:\n" + "\n".join(missing)


@pytest.mark.slow  # fits several models (about a minute of compilation); run with -m slow
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
