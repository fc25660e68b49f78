"""Offsets in formulas: lme4's ``offset(expr)`` terms of the fixed part.

An offset is a known term of the linear predictor, ``η = Xβ + Zb + offset``; its
coefficient is fixed at 1. formulaic has no ``offset`` transform, so the terms are taken out
of the formula here and each ``expr`` is evaluated by formulaic as ``I(expr)``, so it is
arithmetic as in R (``log(exposure)``, ``100 * log(t)``, ``np.log(t)``, a column name).
Several offsets add up, as in R.
"""

from typing import NamedTuple

import numpy as np
import pandas as pd

from mixedjax.spec.evaluation import expression_values


def _matching_paren(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in {text!r}")


def split_offsets(formula: str) -> tuple[str, list[str]]:
    """``formula`` without its top-level ``offset(expr)`` terms, and the ``expr`` strings.

    Example:
        >>> split_offsets("y ~ x + offset(log(t)) + (1 | g)")
        ('y ~ x + (1 | g)', ['log(t)'])
        >>> split_offsets("y ~ x")
        ('y ~ x', [])
    """
    exprs, pieces, i = [], [], 0
    text = formula
    while True:
        j = _find_offset(text, i)
        if j < 0:
            pieces.append(text[i:])
            break
        open_at = text.index("(", j)
        close = _matching_paren(text, open_at)
        exprs.append(text[open_at + 1 : close].strip())
        pieces.append(text[i:j])
        i = close + 1
    if not exprs:
        return formula, []
    rest = "".join(pieces)
    lhs, _, rhs = rest.partition("~")
    terms = [t.strip() for t in _split_plus(rhs)]
    terms = [t for t in terms if t]
    if not terms:
        terms = ["1"]
    return f"{lhs.strip()} ~ {' + '.join(terms)}", exprs


def _find_offset(text: str, start: int) -> int:
    """Index of the next ``offset(`` not preceded by a name character, or -1."""
    pos = start
    while True:
        j = text.find("offset", pos)
        if j < 0:
            return -1
        before = text[j - 1] if j > 0 else " "
        after = text[j + len("offset") :].lstrip()
        if not (before.isalnum() or before in "_.") and after.startswith("("):
            return j
        pos = j + 1


def _split_plus(rhs: str) -> list[str]:
    """Split at top-level ``+`` (not inside parentheses)."""
    out, depth, cur = [], 0, []
    for ch in rhs:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "+" and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def evaluate_offsets(exprs: list[str], data: pd.DataFrame) -> np.ndarray | None:
    """``Σ_k expr_k`` evaluated on ``data`` as a float ``(n,)`` array (NaN kept), or
    ``None`` when there are none.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"t": [1.0, 10.0], "u": [2.0, 3.0]})
        >>> evaluate_offsets(["np.log10(t)", "u"], df).tolist()
        [2.0, 4.0]
    """
    if not exprs:
        return None
    total = np.zeros(len(data))
    for expr in exprs:
        total = total + expression_values(expr, data, f"offset({expr})")
    return total


class OffsetSpec(NamedTuple):
    """How a formula model's offset is computed from a data frame.

    Attributes:
        exprs: the ``offset(expr)`` terms of the formula.
        column: a column name given as ``offset="name"``, or ``None``.
        array: an offset given as an array (only valid for the rows it was given for).
    """

    exprs: tuple[str, ...]
    column: str | None
    array: np.ndarray | None

    @property
    def present(self) -> bool:
        return bool(self.exprs) or self.column is not None or self.array is not None

    def evaluate(self, data: pd.DataFrame, training: bool = True) -> np.ndarray | None:
        """The ``(n,)`` offset on ``data`` (``None`` without one). An array offset exists only
        for the training rows: new data must then carry the offset another way."""
        if not self.present:
            return None
        total = evaluate_offsets(list(self.exprs), data)
        if total is None:
            total = np.zeros(len(data))
        if self.column is not None:
            total = total + data_column(data, self.column, "offset")
        if self.array is not None:
            if not training:
                raise ValueError(
                    "the model's offset was given as an array; for new data give it as a "
                    "column name (offset='col') or as offset(expr) in the formula"
                )
            total = total + self.array
        return total


def data_column(data: pd.DataFrame, name: str, argument: str) -> np.ndarray:
    """Column ``name`` of ``data`` as floats (NaN kept), with errors naming ``argument``."""
    if name not in data.columns:
        raise ValueError(f"{argument}: column {name!r} is not in data")
    values = data[name]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise TypeError(f"{argument}: column {name!r} must be numeric, got dtype {values.dtype}")
    return values.to_numpy(dtype=float, na_value=np.nan)


def formula_priors(formula: str, data: pd.DataFrame, weights, offset):
    """Split lme4's ``offset(expr)`` out of ``formula`` and resolve ``weights``/``offset``
    given as column names of ``data`` or arrays.

    Returns:
        ``(formula without offsets, weights (n,) or None, offset (n,) or None, OffsetSpec)``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"y": [1.0, 2.0], "t": [1.0, 100.0], "w": [1.0, 2.0]})
        >>> f, w, o, spec = formula_priors("y ~ 1 + offset(np.log10(t))", df, "w", None)
        >>> f, w.tolist(), o.tolist()
        ('y ~ 1', [1.0, 2.0], [0.0, 2.0])
    """
    formula, exprs = split_offsets(formula)
    if isinstance(weights, str):
        weights = data_column(data, weights, "weights")
    column, array = (offset, None) if isinstance(offset, str) else (None, offset)
    if array is not None:
        array = np.asarray(getattr(array, "to_numpy", lambda: array)(), dtype=float)
        if array.shape != (len(data),):
            raise ValueError(f"offset has shape {array.shape}; data has {len(data)} rows")
    spec = OffsetSpec(tuple(exprs), column, array)
    return formula, weights, spec.evaluate(data), spec
