"""From an lme4 formula to a model: parse, build the terms, choose the engine.

Routing. Let ``g`` be a grouping factor of the formula such that every other term's factor
is nested in ``g`` (each of its levels occurs within one level of ``g``):

* if the other terms on ``g`` and all terms on nested factors have one column each, and at
  most one term on ``g`` has several (correlated) columns, the model is the core one-factor
  model (:class:`~mixedjax.model.mixedlm.MixedLM`, groups ``g``): that term is ``exog_re``, every
  other term is a variance component localised per group (nested factors fold into the
  per-group block, as in statsmodels' ``vc_formula``);
* otherwise (genuinely crossed factors, or structures the one-factor block cannot hold)
  the model is a ``MixedLM`` fitted by the crossed engine (``MixedLM.from_terms``).

Both report ``varcorr()`` and ``ranef()`` in lme4's layout through
:mod:`mixedjax.results.layout`.
"""

from typing import NamedTuple

import numpy as np
import pandas as pd

from mixedjax.spec.lme4_formula import check_columns, parse_formula
from mixedjax.spec.terms import RandomTerm, build_terms, check_identifiable
from mixedjax.spec.validation import handle_missing

#: Largest dense ``(n, n_levels)`` variance-component design built for the one-factor engine.
MAX_VC_DESIGN_BYTES = 256 * 2**20


class LME4Design(NamedTuple):
    """An evaluated lme4 formula: response, fixed-effects design, random-effects terms, and
    the row-level ``priors`` (``{"weights": (n,) or None, "offset": (n,) or None}``) with
    the same rows kept."""

    endog: pd.Series
    exog: pd.DataFrame
    terms: list[RandomTerm]
    priors: dict


def lme4_design(
    formula: str, data: pd.DataFrame, subset=None, missing: str = "none", priors=None
) -> LME4Design:
    """Evaluate an lme4 formula (without ``offset()`` terms: :mod:`mixedjax.spec.offsets`),
    missing rows handled by ``missing`` (``"none"``/``"raise"``: error naming the column;
    ``"drop"``) together with those of the ``priors`` arrays."""
    from mixedjax.spec.evaluation import model_matrix

    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if subset is not None:
        data = data.loc[subset]
    parsed = parse_formula(formula)
    try:
        matrices = model_matrix(parsed.fixed, data)
    except Exception as err:  # formulaic raises many types; name the column or the part
        check_columns(parsed.fixed, parsed.fixed, 0, data, "the fixed part")
        raise ValueError(f"fixed part {parsed.fixed!r} could not be evaluated: {err}") from err
    if matrices.lhs is None or matrices.lhs.shape[1] != 1:
        raise ValueError(f"formula {formula!r} must have exactly one response on the left")
    endog = matrices.lhs.iloc[:, 0]
    exog = pd.DataFrame(matrices.rhs)
    terms = build_terms(formula, parsed.terms, data)
    if not terms:
        raise ValueError(f"formula {formula!r} has no random-effects term '(expr | group)'")
    columns = {str(endog.name): endog.to_numpy(dtype=float, na_value=np.nan)}
    columns.update({f"exog[{c}]": exog[c].to_numpy(float, na_value=np.nan) for c in exog})
    for t in terms:
        columns[f"random ({' + '.join(t.names)} | {t.group})"] = np.where(
            t.codes[:, None] < 0, np.nan, t.design
        )
    priors = {k: v for k, v in (priors or {}).items() if v is not None}
    columns.update(priors)
    keep, n_dropped = handle_missing(columns, missing)
    if n_dropped:
        endog, exog = endog[keep], exog[keep]
        terms = [t.subset(keep) for t in terms]
        priors = {k: v[keep] for k, v in priors.items()}
    terms = sorted(terms, key=lambda t: -t.n_levels)
    check_identifiable(terms, len(endog))
    return LME4Design(endog, exog, terms, priors)


def _nested_in(term: RandomTerm, outer: RandomTerm) -> bool:
    pairs = np.unique(term.codes.astype(np.int64) * outer.n_levels + outer.codes)
    return pairs.size == term.n_levels


def one_factor_plan(terms: list[RandomTerm]):
    """``(primary term, [variance-component terms])`` if the core engine can hold the
    model, else ``None`` (see the module docstring)."""
    n = terms[0].codes.shape[0]
    factors = sorted({t.group: t for t in terms}.values(), key=lambda t: t.n_levels)
    for outer in factors:
        on_g = [t for t in terms if t.group == outer.group]
        others = [t for t in terms if t.group != outer.group]
        if not all(_nested_in(t, outer) for t in others):
            continue
        multi = [t for t in on_g if t.q > 1]
        if len(multi) > 1 or any(t.q > 1 for t in others):
            return None
        primary = multi[0] if multi else on_g[0]
        vcs = [t for t in terms if t is not primary]
        if sum(t.n_levels for t in vcs) * n * 8 > MAX_VC_DESIGN_BYTES:
            return None
        return primary, vcs
    return None


def model_from_lme4(
    one_factor_class,
    formula: str,
    data: pd.DataFrame,
    subset=None,
    missing="none",
    weights=None,
    offset=None,
    **kwargs,
):
    """A ``one_factor_class`` model (:class:`~mixedjax.model.mixedlm.MixedLM`, which calls
    this from ``from_formula``), fitted by the crossed engine (``from_terms``) for an
    lme4 formula (see the module docstring)."""
    priors = {"weights": weights, "offset": offset}
    endog, exog, terms, priors = lme4_design(formula, data, subset, missing, priors)
    weights, offset = priors.get("weights"), priors.get("offset")
    plan = one_factor_plan(terms)
    if plan is None:
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) {sorted(kwargs)}")
        model = one_factor_class.from_terms(
            endog.to_numpy(float), exog.to_numpy(float), terms, list(exog.columns), endog.name,
            weights, offset,
        )  # fmt: skip
        model.formula = formula
        return model
    primary, vcs = plan
    n = len(endog)
    names, designs, colnames = [], [], []
    for t in vcs:
        design = np.zeros((n, t.n_levels))
        design[np.arange(n), t.codes] = t.design[:, 0]
        names.append(f"{t.names[0]}|{t.group}")
        designs.append(design)
        colnames.append([f"{t.group}[{lev}]" for lev in t.levels])
    groups = primary.levels[primary.codes]
    model = one_factor_class.__new__(one_factor_class)
    model._formula_re_names = list(primary.names)
    model.formula = formula
    model.re_formula = None
    model.vc_formula = None
    exog_vc = {"__row_designs__": {"names": names, "designs": designs, "colnames": colnames}}
    model.__init__(
        endog,
        exog,
        groups,
        exog_re=pd.DataFrame(primary.design, columns=list(primary.names)),
        exog_vc=exog_vc if vcs else None,
        weights=weights,
        offset=offset,
        **kwargs,
    )
    model.group_name = primary.group
    model.lme4_terms = [("re", primary)] + [("vc", c, t) for c, t in enumerate(vcs)]
    model.lme4_terms.sort(key=lambda entry: -entry[-1].n_levels)
    return model
