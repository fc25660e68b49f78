"""Linear hypotheses ``L β = rhs`` from contrast matrices or strings such as ``"Days = 0"``.

A string holds one or more comma-separated equations; each side is a linear expression in
the fixed-effect names (``"Intercept = 2*Days"``, ``"Sex[T.Male] + age = 1"``,
``"Days/2 - 3 = 0"``). lme4's ``(Intercept)`` is accepted for ``Intercept``. Names are
matched longest first, so names containing brackets, dots or operators work; the rest is
parsed with Python's ``ast`` and must be linear (no product of two coefficients).
"""

import ast

import numpy as np


def _linear_form(node, n_names: int):
    """``(coefficients (n,), constant)`` of an ``ast`` expression node."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return np.zeros(n_names), float(node.value)
    if isinstance(node, ast.Name) and node.id.startswith("_b"):
        coef = np.zeros(n_names)
        coef[int(node.id[2:])] = 1.0
        return coef, 0.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        coef, const = _linear_form(node.operand, n_names)
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return sign * coef, sign * const
    if isinstance(node, ast.BinOp):
        lc, lk = _linear_form(node.left, n_names)
        rc, rk = _linear_form(node.right, n_names)
        if isinstance(node.op, ast.Add):
            return lc + rc, lk + rk
        if isinstance(node.op, ast.Sub):
            return lc - rc, lk - rk
        if isinstance(node.op, ast.Mult):
            if np.any(lc) and np.any(rc):
                raise ValueError("hypothesis is not linear (a product of two coefficients)")
            return lc * rk + rc * lk, lk * rk
        if isinstance(node.op, ast.Div):
            if np.any(rc) or rk == 0:
                raise ValueError("hypothesis: can only divide by a non-zero number")
            return lc / rk, lk / rk
    raise ValueError(f"hypothesis: cannot read {ast.unparse(node)!r} as a linear expression")


def parse_hypothesis(hypothesis: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Contrast matrix ``L (m, p)`` and right-hand side ``rhs (m,)`` from a string.

    Example:
        >>> L, rhs = parse_hypothesis("Intercept = 2*Days, Days = 10", ["Intercept", "Days"])
        >>> L.tolist(), rhs.tolist()
        ([[1.0, -2.0], [0.0, 1.0]], [0.0, 10.0])
    """
    if not isinstance(hypothesis, str) or not hypothesis.strip():
        raise ValueError("hypothesis must be a non-empty string like 'Days = 0'")
    aliases = {name: i for i, name in enumerate(names)}
    if "Intercept" in aliases:
        aliases.setdefault("(Intercept)", aliases["Intercept"])
    rows, rhs = [], []
    for equation in _split_top_level(hypothesis):
        text = equation
        for name in sorted(aliases, key=len, reverse=True):
            text = _replace_name(text, name, f" _b{aliases[name]} ")
        sides = text.split("=")
        if len(sides) == 1:
            sides.append("0")
        if len(sides) != 2 or not sides[0].strip() or not sides[1].strip():
            raise ValueError(f"hypothesis {equation.strip()!r} must have the form 'expr = expr'")
        try:
            left, right = (ast.parse(s.strip(), mode="eval").body for s in sides)
        except SyntaxError as err:
            raise ValueError(
                f"hypothesis {equation.strip()!r} could not be parsed; known names: {names}"
            ) from err
        lc, lk = _linear_form(left, len(names))
        rc, rk = _linear_form(right, len(names))
        coef = lc - rc
        if not np.any(coef):
            raise ValueError(f"hypothesis {equation.strip()!r} involves no coefficient")
        rows.append(coef)
        rhs.append(rk - lk)
    return np.vstack(rows), np.asarray(rhs)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets (names like ``C(x)[T.a,b]`` keep their commas)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([" and 1 or (ch in ")]" and -1 or 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _replace_name(text: str, name: str, token: str) -> str:
    """Replace whole-word occurrences of ``name`` (not parts of longer identifiers)."""
    out, i = [], 0
    while True:
        j = text.find(name, i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        before = text[j - 1] if j > 0 else " "
        after = text[j + len(name)] if j + len(name) < len(text) else " "
        word = before.isalnum() or before in "_." or after.isalnum() or after in "_."
        out.append(text[i:j] + (name if word else token))
        i = j + len(name)


def as_contrast(r_matrix, names: list[str], rhs=None) -> tuple[np.ndarray, np.ndarray]:
    """Normalise ``r_matrix`` (string, vector or matrix) and ``rhs`` to ``(L (m, p), rhs (m,))``."""
    p = len(names)
    if isinstance(r_matrix, str):
        L, parsed_rhs = parse_hypothesis(r_matrix, names)
        if rhs is not None:
            raise ValueError("rhs: give the right-hand side inside the hypothesis string")
        return L, parsed_rhs
    L = np.atleast_2d(np.asarray(r_matrix, dtype=float))
    if L.ndim != 2 or L.shape[1] != p:
        raise ValueError(f"r_matrix should have {p} columns (one per fixed effect), got {L.shape}")
    if not np.all(np.isfinite(L)):
        raise ValueError("r_matrix contains non-finite values")
    rhs = np.zeros(L.shape[0]) if rhs is None else np.atleast_1d(np.asarray(rhs, dtype=float))
    if rhs.shape != (L.shape[0],):
        raise ValueError(f"rhs must have {L.shape[0]} entries, got shape {rhs.shape}")
    return L, rhs
