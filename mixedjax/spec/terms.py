"""Random-effects terms: one grouping factor and its columns, as lme4's ``reTrms``.

A term ``(expr | g)`` with ``q`` columns and ``n_levels`` levels contributes the block
``Z_k = [z_{t,c} 1(g_t = j)]`` of ``n_levels * q`` columns (level-major) to ``Z``; its
random effects ``b_{k,j} ~ N(0, Σ_k)`` are independent across levels and terms. Terms
are kept in lme4's order: by decreasing number of levels (stable), which is also the
order of ``θ``.
"""

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from mixedjax.spec.evaluation import matrix_from_spec, model_matrix
from mixedjax.spec.lme4_formula import (
    BarTerm,
    check_columns,
    formula_error,
    interaction_codes,
    parse_formula,
)


class RandomTerm(NamedTuple):
    """One random-effects term.

    Attributes:
        group: the grouping factor as lme4 shows it (``"batch:cask"``).
        names: the ``q`` column names (``"(Intercept)"``, ``"Days"``).
        design: ``(n, q)`` the term's columns per row.
        codes: ``(n,)`` the level of each row, in ``[0, n_levels)``.
        levels: ``(n_levels,)`` level labels (strings).
        correlated: whether the ``q`` effects have a full covariance (always for ``q = 1``).
    """

    group: str
    names: tuple[str, ...]
    design: np.ndarray
    codes: np.ndarray
    levels: np.ndarray
    correlated: bool = True

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def q(self) -> int:
        return self.design.shape[1]

    def subset(self, keep: np.ndarray) -> "RandomTerm":
        """The term on the rows ``keep`` (levels that disappear are dropped)."""
        codes = self.codes[keep]
        used, new_codes = np.unique(codes, return_inverse=True)
        return self._replace(design=self.design[keep], codes=new_codes, levels=self.levels[used])


def lme4_name(column: str) -> str:
    """formulaic's ``Intercept`` is lme4's ``(Intercept)``."""
    return "(Intercept)" if column == "Intercept" else str(column)


def expr_columns(formula: str, term: BarTerm, data: pd.DataFrame) -> pd.DataFrame:
    """The random-effects columns of ``term.expr`` (NaN kept where inputs are missing)."""
    try:
        mat = model_matrix(term.expr, data)
    except Exception as err:  # formulaic raises many types; name the column or the term
        check_columns(formula, term.expr, term.start + 1, data, "a random-effects term")
        raise formula_error(
            formula, term.start, f"random-effects expression {term.expr!r} failed: {err}"
        ) from err
    mat = pd.DataFrame(mat)
    if mat.shape[1] == 0:
        raise formula_error(formula, term.start, "random-effects term has no columns")
    return mat


def build_terms(formula: str, bar_terms, data: pd.DataFrame) -> list[RandomTerm]:
    """Expand the parsed bar terms into :class:`RandomTerm` objects on the rows of ``data``.

    ``(x || g)`` becomes one term per column; ``(1 | a/b)`` becomes ``(1 | a)`` and
    ``(1 | a:b)``. The result is sorted by decreasing number of levels (lme4's order).
    """
    terms: list[RandomTerm] = []
    for bar in bar_terms:
        for names in bar.factors:
            for name in names:
                if name not in data.columns:
                    pos = formula.find(name, bar.start)
                    raise formula_error(
                        formula, pos, f"unknown column {name!r} used as a grouping factor"
                    )
        columns = expr_columns(formula, bar, data)
        col_names = [lme4_name(c) for c in columns.columns]
        values = columns.to_numpy(dtype=float)
        blocks = [(col_names, values)]
        if not bar.correlated:
            blocks = [([c], values[:, [j]]) for j, c in enumerate(col_names)]
        for names in bar.factors:
            codes, levels = interaction_codes(data, names)
            for block_names, block in blocks:
                terms.append(RandomTerm(":".join(names), tuple(block_names), block, codes, levels))
    order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)
    return [terms[k] for k in order]


def check_identifiable(terms: list[RandomTerm], n_obs: int) -> None:
    """Errors and warnings for random-effects structures the data cannot identify.

    * the same column in two terms on one factor (``ValueError``);
    * a grouping factor with one level: its variance is confounded with the intercept
      (``ValueError``);
    * a term with at least as many random effects as observations: confounded with the
      residual (``ValueError``, as lme4's ``check.nobs.vs.nRE``);
    * more random effects in total than observations (warning);
    * a slope whose variable is constant within every level, next to an intercept on the
      same factor: the two are confounded per level (warning).
    """
    seen = set()
    for t in terms:
        for name in t.names:
            if (t.group, name) in seen:
                raise ValueError(
                    f"random effect {name!r} appears in two terms on {t.group!r}: their "
                    "variances are not separately identifiable; keep one"
                )
            seen.add((t.group, name))
    total = 0
    for t in terms:
        if t.n_levels < 2:
            raise ValueError(
                f"grouping factor {t.group!r} has {t.n_levels} level(s): the variance of "
                f"random effects over one level is not identifiable (it is confounded with "
                "the fixed intercept); drop the term or use a factor with at least 2 levels"
            )
        n_random = t.n_levels * t.q
        total += n_random
        if n_random >= n_obs:
            raise ValueError(
                f"term ({' + '.join(t.names)} | {t.group}) has {n_random} random effects for "
                f"{n_obs} observations: its variance is not identifiable separately from the "
                "residual variance"
            )
    if total > n_obs:
        warnings.warn(
            f"the model has {total} random effects for {n_obs} observations; some variance "
            "parameters may not be identifiable",
            UserWarning,
            stacklevel=3,
        )
    for t in terms:
        has_intercept = any(s.group == t.group and "(Intercept)" in s.names for s in terms)
        if not has_intercept:
            continue
        for j, name in enumerate(t.names):
            if name == "(Intercept)":
                continue
            col = t.design[:, j]
            counts = np.bincount(t.codes, minlength=t.n_levels)
            mean = np.bincount(t.codes, weights=col, minlength=t.n_levels) / np.maximum(counts, 1)
            if np.allclose(col, mean[t.codes], rtol=0, atol=1e-12 * max(1.0, np.abs(col).max())):
                warnings.warn(
                    f"random slope on {name!r} does not vary within levels of {t.group!r}: "
                    "it is not identifiable separately from the random intercept of "
                    f"{t.group!r} (expect a singular fit)",
                    UserWarning,
                    stacklevel=3,
                )


def terms_on_newdata(
    formula: str, train: pd.DataFrame, newdata: pd.DataFrame, terms: list[RandomTerm]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fitted ``terms`` evaluated on ``newdata``: per term ``(design (m, q), codes (m,))``
    with the training encodings (formulaic's model spec of the training data) and codes
    into the term's training levels (``-1`` for a level the fit never saw).

    ``formula`` is the model's lme4 formula without offsets. Raises ``ValueError`` naming
    the missing column or the expression that cannot be evaluated.
    """
    built = {}
    for bar in parse_formula(formula).terms:
        for names in bar.factors:
            for name in names:
                if name not in newdata.columns:
                    raise ValueError(f"newdata: the grouping column {name!r} is missing")
        try:
            spec = model_matrix(bar.expr, train).model_spec
            columns = pd.DataFrame(matrix_from_spec(spec, newdata))
        except Exception as err:  # formulaic raises many types: name the term
            raise ValueError(
                f"newdata: cannot evaluate the random term {bar.expr!r}: {err}"
            ) from err
        col_names = [lme4_name(c) for c in columns.columns]
        values = columns.to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"newdata: missing values in the columns of {bar.expr!r}")
        blocks = [(col_names, values)]
        if not bar.correlated:
            blocks = [([c], values[:, [j]]) for j, c in enumerate(col_names)]
        for names in bar.factors:
            codes, levels = interaction_codes(newdata, names)
            labels = np.where(codes >= 0, levels[np.maximum(codes, 0)], "")
            for block_names, block in blocks:
                built[(":".join(names), tuple(block_names))] = (block, labels)
    out = []
    for t in terms:
        block, labels = built[(t.group, tuple(t.names))]
        codes = pd.Index(np.asarray(t.levels).astype(str)).get_indexer(labels)
        out.append((block, codes.astype(np.int64)))
    return out
