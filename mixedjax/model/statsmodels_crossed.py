"""statsmodels' spelling of crossed random effects, routed to the crossed engine.

statsmodels fits crossed effects as variance components inside one group that holds
every row::

    MixedLM.from_formula("y ~ x", df.assign(one=1), groups="one",
                         vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"})

Inside that group the random-effects design has one column per level of every factor,
so statsmodels' dense algebra costs ``O(r^3)`` per evaluation with ``r`` the total number
of levels. Each such component is an *indicator design* (at most one non-zero per row):
it is exactly the lme4 term ``(1 | a)``. This module recognises the pattern (in the
formulas, before any dense design is built, or in given ``exog_vc`` designs) and builds
the equivalent crossed-engine ``MixedLM`` (:meth:`~mixedjax.model.mixedlm.MixedLM.from_terms`),
whose fit equals the lme4 formula's.
"""

import re

import numpy as np
import pandas as pd

from mixedjax.spec.terms import RandomTerm

#: Above this many variance-component columns in one all-rows group, a ``MixedLM`` built
#: from ``exog_vc`` skips statsmodels' dense per-group cross-products (``r x r``) and only
#: keeps the crossed engine.
DENSE_VC_LIMIT = 1000

_INDICATOR = re.compile(
    r"^(?:0\+|-1\+)?(?:C\((?P<c>[A-Za-z_.][A-Za-z0-9_.]*)\)|(?P<n>[A-Za-z_.][A-Za-z0-9_.]*))"
    r"(?:-1|\+0)?$"
)
_NO_RE = {None, "0", "~0", "-1", "~-1", "0+1-1"}


def _indicator_column(formula: str, data: pd.DataFrame) -> str | None:
    """The column behind a ``"0 + C(a)"``-like formula, or ``None``."""
    text = formula.replace(" ", "")
    match = _INDICATOR.match(text)
    if not match or not (text.startswith(("0+", "-1+")) or text.endswith(("-1", "+0"))):
        return None
    name = match.group("c") or match.group("n")
    if name not in data.columns:
        return None
    col = data[name]
    if (
        match.group("n")
        and pd.api.types.is_numeric_dtype(col)
        and not isinstance(col.dtype, pd.CategoricalDtype)
    ):
        return None  # "0 + x" with numeric x is a slope, not an indicator design
    return name


def _is_one_group(groups, data: pd.DataFrame) -> bool:
    values = data[groups] if isinstance(groups, str) and groups in data.columns else groups
    values = pd.Series(np.asarray(values))
    return len(values) == len(data) and values.notna().all() and values.nunique() == 1


def crossed_from_formula(
    model_class,
    formula,
    data,
    groups,
    re_formula,
    vc_formula,
    subset=None,
    weights=None,
    offset=None,
):
    """A crossed-engine ``model_class`` (``MixedLM``) for statsmodels' crossed spelling, or
    ``None`` if the arguments are anything else (one all-rows group, no ``re_formula``, every
    ``vc_formula`` entry an indicator ``"0 + C(a)"``, no missing values, also in the
    ``(n,)`` prior ``weights`` and ``offset``)."""
    from mixedjax.spec.evaluation import model_matrix

    if not vc_formula or not isinstance(vc_formula, dict) or not isinstance(data, pd.DataFrame):
        return None
    if re_formula is not None and re_formula.replace(" ", "") not in _NO_RE:
        return None
    if subset is not None:
        data = data.loc[subset]
    if groups is None or not _is_one_group(groups, data):
        return None
    names = sorted(vc_formula)
    columns = [_indicator_column(vc_formula[name], data) for name in names]
    if any(c is None for c in columns) or data[columns].isna().any().any():
        return None
    try:
        matrices = model_matrix(formula, data)
    except Exception:  # let the general path report formula errors
        return None
    endog = matrices.lhs.iloc[:, 0]
    exog = pd.DataFrame(matrices.rhs)
    if endog.isna().any() or exog.isna().any().any():
        return None
    if any(v is not None and not np.all(np.isfinite(v)) for v in (weights, offset)):
        return None
    terms = []
    for name, col in zip(names, columns, strict=True):
        codes, levels = pd.factorize(data[col], sort=True)
        terms.append(
            RandomTerm(
                name,
                ("(Intercept)",),
                np.ones((len(data), 1)),
                codes.astype(np.int64),
                np.asarray(levels.astype(str)),
            )
        )
    _check_levels(terms)
    model = model_class.from_terms(
        endog.to_numpy(float), exog.to_numpy(float), terms, list(exog.columns), endog.name,
        weights, offset,
    )  # fmt: skip
    model.formula = formula
    model.vc_formula = vc_formula
    model.vc_names = names
    model._statsmodels_vc_layout = True  # start_params/free in statsmodels' layout
    model.term_columns = dict(zip(names, columns, strict=True))  # for predict(newdata)
    return model


def terms_from_vc_designs(vc_names, designs, colnames) -> list[RandomTerm] | None:
    """Indicator-like variance-component designs (``(n, K)``, at most one non-zero per row)
    as crossed terms; ``None`` if some component is not of that form."""
    from mixedjax.results.onefactor import _level_of

    terms = []
    for name, design, cols in zip(vc_names, designs, colnames, strict=True):
        design = np.asarray(design, dtype=float)
        nonzero = design != 0
        if design.shape[1] < 2 or np.any(nonzero.sum(axis=1) > 1):
            return None
        used = nonzero.any(axis=0)
        codes = np.argmax(nonzero[:, used], axis=1)
        values = design[np.arange(design.shape[0]), np.flatnonzero(used)[codes]]
        levels = np.asarray([_level_of(c) for c in np.asarray(cols)[used]], dtype=str)
        terms.append(RandomTerm(str(name), ("(Intercept)",), values[:, None], codes, levels))
    _check_levels(terms)
    return terms


def _check_levels(terms: list[RandomTerm]) -> None:
    for t in terms:
        if t.n_levels < 2:
            raise ValueError(
                f"variance component {t.group!r} has {t.n_levels} level(s): its variance is "
                "not identifiable (it is confounded with the fixed intercept)"
            )
