"""Formula front end (statsmodels style): fixed part by formulaic, ``re_formula``, ``vc_formula``.

The fixed-effects formula ``"y ~ x + C(f)"`` is parsed by formulaic (categoricals,
interactions, ``I(...)`` and transforms work as there). ``re_formula`` (e.g. ``"~x"``) gives
the random-effects design; as in statsmodels its intercept column is named after the
``groups`` column (``"Group"`` when ``groups`` is an array, or for the default random
intercept). ``vc_formula`` maps names to formulas whose columns become variance components
within each group (``{"cask": "0 + C(cask)"}``).
"""

from typing import NamedTuple

import numpy as np
import pandas as pd

from mixedjax.spec.evaluation import matrix_from_spec, model_matrix


class FormulaDesign(NamedTuple):
    """Row-level arrays built from formulas (rows as in ``data``; NaN kept for checking).

    Example:
        >>> import mixedjax
        >>> d = design_from_formulas("Reaction ~ Days", mixedjax.datasets.load("sleepstudy"),
        ...                          "Subject", "~Days", None)
        >>> list(d.exog.columns), d.re_names, d.group_name
        (['Intercept', 'Days'], ['Subject', 'Days'], 'Subject')
    """

    endog: pd.Series
    exog: pd.DataFrame
    groups: np.ndarray
    exog_re: pd.DataFrame | None
    re_names: list[str] | None
    exog_vc: dict | None
    group_name: str


def _matrix(formula: str, data: pd.DataFrame, what: str):
    try:
        return model_matrix(formula, data)
    except Exception as err:  # formulaic raises many types; name the argument
        raise ValueError(f"{what} {formula!r} could not be evaluated: {err}") from err


def design_from_formulas(
    formula: str,
    data: pd.DataFrame,
    groups,
    re_formula: str | None,
    vc_formula: dict[str, str] | None,
    subset=None,
) -> FormulaDesign:
    """Evaluate the statsmodels-style formulas on ``data``.

    Example:
        >>> import mixedjax
        >>> d = design_from_formulas("strength ~ 1", mixedjax.datasets.load("pastes"), "batch",
        ...                          None, {"cask": "0 + C(cask)"})
        >>> d.exog_re is None, d.exog_vc["__row_designs__"]["names"]
        (True, ['cask'])
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a string like 'y ~ x', got {formula!r}")
    if subset is not None:
        data = data.loc[subset]
    if groups is None:
        raise ValueError("groups is required: a column name of data or an array of labels")
    if isinstance(groups, str):
        if groups not in data.columns:
            raise ValueError(f"groups: column {groups!r} is not in data")
        group_name, groups = groups, data[groups].to_numpy()
    else:
        group_name, groups = "Group", np.asarray(groups)
        if groups.shape[0] != len(data):
            raise ValueError(f"groups has {groups.shape[0]} entries but data has {len(data)} rows")

    matrices = _matrix(formula, data, "formula")
    if matrices.lhs is None or matrices.lhs.shape[1] != 1:
        raise ValueError(f"formula {formula!r} must have exactly one response on the left")
    endog = matrices.lhs.iloc[:, 0]
    exog = pd.DataFrame(matrices.rhs)

    exog_re, re_names = None, None
    if re_formula is not None:
        re = pd.DataFrame(_matrix(re_formula, data, "re_formula"))
        re_names = [group_name if c == "Intercept" else c for c in re.columns]
        exog_re = re
    elif vc_formula is None:
        exog_re = pd.DataFrame({"Group": np.ones(len(data))}, index=data.index)
        re_names = ["Group"]  # statsmodels keeps "Group" for the default random intercept

    exog_vc = None
    if vc_formula:
        if not isinstance(vc_formula, dict):
            raise TypeError("vc_formula must be a dict {name: formula}")
        names = sorted(vc_formula)
        designs, colnames = [], []
        for name in names:
            mat = pd.DataFrame(_matrix(vc_formula[name], data, f"vc_formula[{name!r}]"))
            designs.append(mat.to_numpy(dtype=float))
            colnames.append([str(c) for c in mat.columns])
        exog_vc = {"__row_designs__": {"names": names, "designs": designs, "colnames": colnames}}
    return FormulaDesign(endog, exog, groups, exog_re, re_names, exog_vc, group_name)


def spec_matrix(formula: str, train: pd.DataFrame, newdata: pd.DataFrame, what: str):
    """``formula`` (a right-hand side) evaluated on ``newdata`` with the encodings it has on
    the training data ``train``, as a float ``(m, k)`` array; errors name ``what``."""
    try:
        spec = model_matrix(formula, train)
        spec = getattr(spec, "rhs", spec).model_spec
        mat = matrix_from_spec(spec, newdata)
    except Exception as err:  # formulaic raises many types: name the argument
        raise ValueError(f"newdata: cannot evaluate {what} {formula!r}: {err}") from err
    mat = np.asarray(pd.DataFrame(mat).to_numpy(dtype=float))
    if mat.shape[0] != len(newdata) or not np.all(np.isfinite(mat)):
        raise ValueError(f"newdata: missing or non-finite values in the columns of {what}")
    return mat
