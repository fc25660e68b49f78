"""Evaluating formula parts with formulaic, in the namespace of the code that wrote them.

A formula may call the caller's own functions and read its variables, as in statsmodels
(its ``eval_env``) and R: ``"y ~ times_two(x1)"`` with ``times_two`` defined next to the
call. The entry points (``MixedLM.from_formula``, ``glmer``, ``from_chunks``) capture that
namespace once with :func:`caller_namespace` and evaluate every part of the model (fixed
part, ``re_formula``, ``vc_formula``, bar terms, offsets, ``cbind`` arguments) inside
:func:`evaluated_in`; the model keeps it so ``predict(newdata)`` evaluates the same
functions. Data columns win over names of the namespace, and formulaic's own transforms
(``C``, ``I``, ``log``, ``center``, ``np``...) are always there.

Only the names a formula mentions are kept (not the caller's whole frame), and a pickled
model keeps those of them that pickle (a function local to a test does not).
"""

import contextlib
import contextvars
import functools
import pickle
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FormulaNamespace(Mapping):
    """The caller's names a model's formulas use (read-only). Pickles what pickles.

    Example:
        >>> ns = FormulaNamespace({"scale_by": 2.0})
        >>> dict(ns), len(FormulaNamespace())
        ({'scale_by': 2.0}, 0)
    """

    def __init__(self, names: Mapping | None = None):
        self._names = dict(names or {})

    def __getitem__(self, key):
        return self._names[key]

    def __iter__(self) -> Iterator:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __reduce__(self):
        kept = {}
        for name, value in self._names.items():
            try:
                pickle.dumps(value)
            except Exception:  # a local function, an open file...: not part of the pickle
                continue
            kept[name] = value
        return (FormulaNamespace, (kept,))

    def __repr__(self) -> str:
        return f"FormulaNamespace({sorted(self._names)})"


_CURRENT: contextvars.ContextVar[Mapping | None] = contextvars.ContextVar(
    "mixedjax_formula_namespace", default=None
)


def _current() -> Mapping:
    return _CURRENT.get() or FormulaNamespace()


def caller_namespace(eval_env, formulas: Iterable, depth: int) -> FormulaNamespace:
    """The names of the calling code that ``formulas`` mention.

    Args:
        eval_env: statsmodels' argument: ``None`` or ``0`` for the caller's frame, ``k > 0``
            for ``k`` frames further up, ``-1`` for no names, or a mapping used as it is.
        formulas: the formula strings of the model (``None`` entries and dicts of formulas
            are allowed).
        depth: frames between the caller's frame and the code calling this function: 0 to
            capture one's own names, 1 in an entry point (``from_formula``) to capture its
            caller's.

    Example:
        >>> def times_two(x):
        ...     return 2 * x
        >>> sorted(caller_namespace(None, ["y ~ times_two(x)"], depth=0))
        ['times_two']
    """
    if isinstance(eval_env, FormulaNamespace):
        return eval_env
    if isinstance(eval_env, Mapping):
        return FormulaNamespace(eval_env)
    if eval_env is None:
        eval_env = 0
    if isinstance(eval_env, bool) or not isinstance(eval_env, int) or eval_env < -1:
        raise TypeError(
            f"eval_env must be None, -1, a frame count >= 0 or a mapping, got {eval_env!r}"
        )
    if eval_env == -1:
        return FormulaNamespace()
    names = set()
    for text in _strings(formulas):
        names.update(_IDENTIFIER.findall(text))
    frame = sys._getframe(depth + 1 + eval_env)
    found = {}
    for name in names:
        if name in frame.f_locals:
            found[name] = frame.f_locals[name]
        elif name in frame.f_globals:
            found[name] = frame.f_globals[name]
    return FormulaNamespace(found)


def _strings(formulas) -> Iterator[str]:
    for item in formulas:
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            yield from _strings(item.values())
        elif isinstance(item, list | tuple):
            yield from _strings(item)


@contextlib.contextmanager
def evaluated_in(namespace: Mapping | None):
    """Evaluate formulas inside the block with ``namespace``'s names available."""
    token = _CURRENT.set(namespace)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def model_matrix(formula, data: pd.DataFrame):
    """formulaic's ``model_matrix`` in the current namespace, missing values kept as NaN."""
    import formulaic  # loaded with the first formula, not with mixedjax

    return formulaic.model_matrix(formula, data, context=_current(), na_action="ignore")


def matrix_from_spec(spec, data: pd.DataFrame):
    """A formulaic ``ModelSpec`` applied to new ``data`` in the current namespace."""
    return spec.get_model_matrix(data, context=_current(), na_action="ignore")


def expression_values(expr: str, data: pd.DataFrame, what: str) -> np.ndarray:
    """One arithmetic expression (``"log(t)"``, ``"n - s"``) as an ``(n,)`` float array,
    evaluated as formulaic's ``I(expr)``; errors name it as ``what`` (``"offset(log(t))"``).

    Example:
        >>> df = pd.DataFrame({"t": [1.0, 10.0]})
        >>> expression_values("np.log10(t) + 1", df, "offset(np.log10(t) + 1)").tolist()
        [1.0, 2.0]
    """
    try:
        mat = model_matrix(f"0 + I({expr})", data)
    except Exception as err:  # formulaic raises many types: name the expression
        raise ValueError(f"{what} could not be evaluated: {err}") from err
    values = np.asarray(mat, dtype=float)
    if values.ndim != 2 or values.shape[1] != 1:
        raise ValueError(f"{what} must be one numeric column, got {values.shape[-1]} columns")
    return values[:, 0]


def in_namespace_of(model_of: Callable):
    """Decorator: run the function inside :func:`evaluated_in` the namespace of the model
    ``model_of(first argument)`` was built in (for ``predict(newdata)`` and the like)."""

    def decorate(function):
        @functools.wraps(function)
        def wrapped(first, *args, **kwargs):
            namespace = getattr(model_of(first), "_formula_namespace", None)
            with evaluated_in(namespace):
                return function(first, *args, **kwargs)

        return wrapped

    return decorate
