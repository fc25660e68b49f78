"""Every public function and class has a docstring with an example (issue: Jupyter and
everyday use, deliverable 5), and the examples run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import mixedjax

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(mixedjax.__path__, prefix="mixedjax.")
    if not m.name.rsplit(".", 1)[-1].startswith("_")
)


def _public_api():
    """The user-facing API: what ``mixedjax`` exports, the public methods and properties of
    the classes it exports, and the functions of ``mixedjax.functional``."""
    import inspect

    for name in mixedjax.__all__:
        obj = getattr(mixedjax, name)
        if inspect.ismodule(obj):
            for fname, fn in vars(obj).items():
                if (
                    inspect.isfunction(fn)
                    and not fname.startswith("_")
                    and (fn.__module__ == obj.__name__)
                ):
                    yield f"{obj.__name__}.{fname}", fn
            continue
        yield f"mixedjax.{name}", obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                target = getattr(target, "__func__", target)
                if inspect.isfunction(target):
                    yield f"mixedjax.{name}.{attr}", target


def test_public_definitions_have_docstrings_with_examples():
    """Exported functions and classes carry a runnable example; their public methods and
    properties carry at least a docstring (the class example shows them in use)."""
    no_example, no_doc = [], []
    for where, obj in _public_api():
        doc = inspect_doc(obj) or ""
        is_member = where.count(".") == 2 and not where.startswith("mixedjax.functional")
        if is_member and not doc.strip():
            no_doc.append(where)
        elif not is_member and ">>>" not in doc:
            no_example.append(where)
    assert not no_example, "exported API without a docstring example:\n" + "\n".join(no_example)
    assert not no_doc, "public methods without a docstring:\n" + "\n".join(no_doc)


def inspect_doc(obj):
    import inspect

    return inspect.getdoc(obj)


@pytest.mark.slow  # fits several models (about a minute of compilation); run with -m slow
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
