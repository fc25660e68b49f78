"""lme4 formula syntax: ``y ~ x + (x | subject) + (1 | item)``.

The formula is split into its fixed part (everything outside the bar terms, evaluated by
formulaic: categoricals, interactions, ``I(...)`` and transforms work as there) and a list
of random-effects *bar terms* ``(expr | group)``, parsed here:

* ``(x | g)``: intercept and slope on ``x``, correlated, per level of ``g``;
* ``(1 | g)``, ``(0 + x | g)``: intercept only, slope only;
* ``(x || g)``: uncorrelated: one term per column of ``expr`` (lme4's expansion
  ``(1 | g) + (0 + x | g)``);
* ``(1 | a/b)``: nested, the same as ``(1 | a) + (1 | a:b)``;
* ``(1 | a:b)``: one level per observed combination of ``a`` and ``b``.

Malformed terms raise a ``ValueError`` that shows the formula with a caret under the
problem; unknown columns are named.
"""

import re
from typing import NamedTuple

import numpy as np
import pandas as pd

_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")


class BarTerm(NamedTuple):
    """One parsed ``(expr | group)`` term (before ``||`` expansion).

    Attributes:
        expr: the left-hand side, a formula for the random-effects columns (``"1 + x"``).
        factors: the grouping expression split at ``/``: each entry is the tuple of column
            names joined by ``:`` (``a/b`` gives ``(("a",), ("a", "b"))``).
        correlated: ``False`` for ``||``.
        start: offset of the term's ``(`` in the formula (for error carets).
    """

    expr: str
    factors: tuple[tuple[str, ...], ...]
    correlated: bool
    start: int


class ParsedFormula(NamedTuple):
    """A formula split into the fixed part (``"y ~ x"``) and its bar terms."""

    fixed: str
    terms: tuple[BarTerm, ...]


def formula_error(formula: str, pos: int, message: str) -> ValueError:
    """A ``ValueError`` showing ``formula`` with a caret at ``pos``."""
    pos = max(0, min(pos, len(formula)))
    return ValueError(f"{message}\n  {formula}\n  {' ' * pos}^")


def has_bar_terms(formula) -> bool:
    """Whether ``formula`` contains a random-effects term ``(... | ...)``."""
    return isinstance(formula, str) and "|" in formula


def _matching_paren(formula: str, open_pos: int) -> int:
    depth = 0
    for i in range(open_pos, len(formula)):
        if formula[i] == "(":
            depth += 1
        elif formula[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise formula_error(formula, open_pos, "unbalanced parenthesis: this '(' is never closed")


def _top_level_bar(formula: str, start: int, end: int) -> tuple[int, int] | None:
    """Position and width (1 or 2) of the first ``|``/``||`` at depth 0 in ``[start, end)``."""
    depth = 0
    found = None
    i = start
    while i < end:
        ch = formula[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            width = 2 if i + 1 < end and formula[i + 1] == "|" else 1
            if found is not None:
                raise formula_error(formula, i, "a random-effects term may contain only one bar")
            found = (i, width)
            i += width
            continue
        i += 1
    return found


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into its fixed part and bar terms."""
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise ValueError(f"formula must be a string with one '~' (like 'y ~ x'), got {formula!r}")
    tilde = formula.index("~")
    for i, ch in enumerate(formula):
        if ch == ")" and formula[:i].count("(") < formula[: i + 1].count(")"):
            raise formula_error(formula, i, "unbalanced parenthesis: this ')' has no '('")
    terms: list[BarTerm] = []
    fixed_pieces: list[str] = []
    cursor = tilde + 1
    i = cursor
    while i < len(formula):
        if formula[i] != "(":
            i += 1
            continue
        close = _matching_paren(formula, i)
        bar = _top_level_bar(formula, i + 1, close)
        if bar is None:
            i = close + 1
            continue
        before = formula[cursor:i].rstrip()
        if before.endswith("-"):
            raise formula_error(
                formula, i, "random-effects terms can only be added ('+'), not removed"
            )
        fixed_pieces.append(formula[cursor:i])
        terms.append(_parse_bar(formula, i, close, bar))
        cursor = i = close + 1
    fixed_pieces.append(formula[cursor:])
    if "|" in "".join(fixed_pieces):
        raise formula_error(
            formula,
            _find_outside_terms(formula, terms),
            "a bar '|' must be inside parentheses, as in '(x | g)'",
        )
    rhs = _clean_plus(" ".join(p.strip() for p in fixed_pieces))
    return ParsedFormula(f"{formula[:tilde].strip()} ~ {rhs or '1'}", tuple(terms))


def _find_outside_terms(formula: str, terms: list[BarTerm]) -> int:
    covered = set()
    for t in terms:
        covered.update(range(t.start, _matching_paren(formula, t.start) + 1))
    for i, ch in enumerate(formula):
        if ch == "|" and i not in covered:
            return i
    return 0


def _clean_plus(rhs: str) -> str:
    """Drop the ``+`` signs left dangling by removing the bar terms."""
    parts = [p.strip() for p in _split_top(rhs, "+")]
    return " + ".join(p for p in parts if p)


def _split_top(text: str, sep: str) -> list[str]:
    out, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(text[last:i])
            last = i + 1
    out.append(text[last:])
    return out


def _parse_bar(formula: str, open_pos: int, close: int, bar: tuple[int, int]) -> BarTerm:
    pos, width = bar
    expr = formula[open_pos + 1 : pos].strip()
    group = formula[pos + width : close]
    if not expr:
        raise formula_error(formula, pos, "missing random-effects expression before the bar")
    if not group.strip():
        raise formula_error(formula, close, "missing grouping factor after the bar")
    factors = []
    offset = pos + width
    prefix: tuple[str, ...] = ()
    for piece in group.split("/"):
        names = []
        piece_offset = offset
        for name in piece.split(":"):
            stripped = name.strip()
            name_pos = piece_offset + (len(name) - len(name.lstrip()))
            if stripped.startswith("(") and stripped.endswith(")"):
                stripped = stripped[1:-1].strip()
            if not _NAME.fullmatch(stripped):
                raise formula_error(
                    formula,
                    name_pos,
                    "grouping factor must be a column name, or names joined by ':' or '/'",
                )
            names.append(stripped.strip("`"))
            piece_offset += len(name) + 1
        for name in names:
            if prefix.count(name) or names.count(name) > 1:
                raise formula_error(
                    formula,
                    offset,
                    f"grouping factor {name!r} is nested in itself: it is not identifiable",
                )
        prefix = prefix + tuple(names)
        factors.append(prefix)
        offset += len(piece) + 1
    return BarTerm(expr, tuple(factors), width == 1, open_pos)


def check_columns(formula: str, text: str, offset: int, data: pd.DataFrame, where: str) -> None:
    """Raise naming the first identifier of ``text`` that is neither a column nor a function.

    Used after formulaic failed, to turn its message into one that names the column (a
    heuristic: keyword arguments and contrast names also look like identifiers).
    """
    # blank out string literals (e.g. C(f, Treatment('a'))) so their contents are not names
    text = re.sub(r"'[^']*'|\"[^\"]*\"", lambda m: " " * len(m.group(0)), text)
    for match in _NAME.finditer(text):
        name = match.group(0).strip("`")
        after = text[match.end() :].lstrip()
        if after.startswith("(") or name in data.columns or _is_number(name):
            continue
        if "." in name and name.split(".")[0] in ("np", "numpy", "math"):
            continue
        raise formula_error(formula, offset + match.start(), f"unknown column {name!r} in {where}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def interaction_codes(data: pd.DataFrame, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and labels of the observed combinations of the columns ``names``.

    Levels are sorted by each column in turn (lme4 sorts factor levels), labels are joined
    with ``:`` (``"A:a"``). Rows with a missing value in any column get code ``-1``.
    """
    codes = np.zeros(len(data), dtype=np.int64)
    labels = np.full(len(data), "", dtype=object)
    missing = np.zeros(len(data), dtype=bool)
    for k, name in enumerate(names):
        col = data[name]
        missing |= col.isna().to_numpy()
        try:
            c, lev = pd.factorize(col, sort=True)
        except TypeError:
            c, lev = pd.factorize(col, sort=False)
        codes = codes * (len(lev) + 1) + c
        text = np.asarray(lev.astype(str), dtype=object)[np.maximum(c, 0)]
        labels = text if k == 0 else labels + ":" + text
    codes[missing] = -1
    uniq, inverse = np.unique(codes[~missing], return_inverse=True)
    out = np.full(len(data), -1, dtype=np.int64)
    out[~missing] = inverse
    first = np.zeros(uniq.size, dtype=np.int64)
    first[inverse[::-1]] = np.flatnonzero(~missing)[::-1]
    return out, np.asarray(labels[first], dtype=str)
