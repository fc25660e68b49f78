"""Prediction for models with several grouping factors (the crossed engine).

A row with fixed design ``x`` and, per term ``k``, columns ``z_k`` on level ``l_k`` is
predicted by ``x'β̂ + Σ_k z_k' b̂_k[l_k] + o`` (a level the fit never saw contributes 0, as
lme4's ``allow.new.levels``). The intervals use the prediction-error covariance of
Henderson's mixed-model equations in the spherical form ``b = Λu``:

.. math::
    M = \\begin{pmatrix} Λ'Z'ZΛ + I & Λ'Z'X \\\\ X'ZΛ & X'X \\end{pmatrix},
    \\qquad \\operatorname{var}(\\hat η - η) = σ^2 a'M^{-1}a, \\quad a = (Λ'z, x),

on the working rows (:mod:`mixedjax.design.weights`), plus ``z_u' G z_u`` for the columns of
levels never seen and ``σ²`` for a new observation (``interval="prediction"``). ``M`` is
``(Q + p)`` square with ``Q = Σ_k n_k q_k`` random effects: it is formed densely (``Z`` is
sparse) up to :data:`MAX_DENSE_EFFECTS`.
"""

import numpy as np
import pandas as pd
from scipy import sparse  # a dependency of jax: sparse Z'Z for the interval system

from mixedjax.engines.crossed import term_factors
from mixedjax.inference.intervals import interval_frame
from mixedjax.spec.formula import spec_matrix
from mixedjax.spec.lme4_formula import has_bar_terms, parse_formula
from mixedjax.spec.offsets import split_offsets
from mixedjax.spec.terms import terms_on_newdata

#: Largest ``Q + p`` for which prediction intervals form ``M`` densely (about 0.3 GB).
MAX_DENSE_EFFECTS = 6000


def _fixed_matrix(formula_rhs: str, train: pd.DataFrame, newdata: pd.DataFrame) -> np.ndarray:
    return spec_matrix(formula_rhs, train, newdata, "the fixed-effects formula")


def rows_on_newdata(model, newdata: pd.DataFrame):
    """``(exog (m, p), [(design (m, q_k), codes (m,))] per term)`` of new rows."""
    train = getattr(model, "_formula_data", None)
    if train is None or getattr(model, "formula", None) is None:
        raise ValueError(
            "newdata needs a model built from a formula (mixedjax.mixedlm / from_formula)"
        )
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    formula = split_offsets(model.formula)[0]
    if has_bar_terms(formula):
        rhs = parse_formula(formula).fixed.split("~", 1)[1]
        return _fixed_matrix(rhs, train, newdata), terms_on_newdata(
            formula, train, newdata, model.terms
        )
    # statsmodels' one-group spelling: each term is an indicator of one column
    rhs = formula.split("~", 1)[1]
    out = []
    for t in model.terms:
        column = model.term_columns[t.group]
        if column not in newdata.columns:
            raise ValueError(f"newdata: the column {column!r} of {t.group!r} is missing")
        labels = newdata[column].astype(str).to_numpy()
        codes = pd.Index(np.asarray(t.levels).astype(str)).get_indexer(labels)
        out.append((np.ones((len(newdata), 1)), codes.astype(np.int64)))
    return _fixed_matrix(rhs, train, newdata), out


def predict_crossed(results, newdata, include_random, allow_new_levels, interval, alpha):
    """Front end of ``predict`` for the crossed engine (see the module docstring)."""
    model = results.model
    if newdata is None:
        exog = model.exog
        rows = [(t.design, t.codes) for t in model.terms]
        offset = model.rows.offset if model.rows.has_offset else None
        weights = model.rows.weights
    else:
        exog, rows = rows_on_newdata(model, newdata)
        spec = getattr(model, "offset_spec", None)
        offset = spec.evaluate(newdata, training=False) if spec is not None else None
        weights = 1.0
    unseen = np.zeros(exog.shape[0], dtype=bool)
    for _, codes in rows:
        unseen |= codes < 0
    if include_random and not allow_new_levels and np.any(unseen):
        new = np.flatnonzero(unseen)[:5]
        raise ValueError(
            f"rows {new.tolist()} have levels not seen in the fit; pass "
            "allow_new_levels=True to predict them without those effects"
        )
    pred = exog @ np.asarray(results.fe_params)
    if include_random:
        for (design, codes), est in zip(rows, results.term_estimates, strict=True):
            seen = codes >= 0
            values = np.where(seen[:, None], est.condval[np.maximum(codes, 0)], 0.0)
            pred = pred + np.einsum("mq,mq->m", design, values)
    if offset is not None:
        pred = pred + offset

    def confidence_variance():
        return _prediction_error_variance(results, exog, rows, include_random)

    return interval_frame(pred, interval, alpha, confidence_variance, results.scale / weights)


def _term_factors(results) -> list[np.ndarray]:
    factors = term_factors(np.asarray(results.theta), results.model.structure)
    return [np.asarray(L) for L in factors]


def _prediction_error_variance(results, exog, rows, include_random) -> np.ndarray:
    """``σ² a'M⁻¹a`` per row (module docstring), plus the prior variance of unseen levels."""
    model = results.model
    factors = _term_factors(results)
    starts = np.cumsum([0] + [t.n_levels * t.q for t in model.terms])
    Q, p = int(starts[-1]), exog.shape[1]
    if Q + p > MAX_DENSE_EFFECTS:
        raise ValueError(
            f"prediction intervals of this model need a dense system of {Q + p} random and "
            f"fixed effects (at most {MAX_DENSE_EFFECTS}); predict without interval="
        )
    n = model.nobs
    blocks = []  # Z Λ of the working training rows, term by term
    for t, L, start in zip(model._working_terms, factors, starts[:-1], strict=True):
        zl = t.design @ L  # (n, q_k): row j's columns times Λ_k
        cols = start + t.codes[:, None] * t.q + np.arange(t.q)[None, :]
        blocks.append(
            sparse.csr_matrix(
                (zl.ravel(), (np.repeat(np.arange(n), t.q), cols.ravel())), shape=(n, Q)
            )
        )
    ZL = blocks[0]
    for b in blocks[1:]:
        ZL = ZL + b
    X = model._working_exog
    top = (ZL.T @ ZL).toarray() + np.eye(Q)
    cross = np.asarray(ZL.T @ X)
    system = np.block([[top, cross], [cross.T, X.T @ X]])
    chol = np.linalg.cholesky(system)
    m = exog.shape[0]
    a = np.zeros((Q + p, m))
    a[Q:, :] = exog.T
    unseen_var = np.zeros(m)
    if include_random:
        for (design, codes), t, L, start in zip(
            rows, model.terms, factors, starts[:-1], strict=True
        ):
            seen = codes >= 0
            zl = design @ L  # a_u = Λ' z: (m, q_k)
            idx = np.flatnonzero(seen)
            for j in range(t.q):
                np.add.at(a, (start + codes[idx] * t.q + j, idx), zl[idx, j])
            G = results.scale * (L @ L.T)
            unseen_var += np.where(~seen, np.einsum("mq,qr,mr->m", design, G, design), 0.0)
    solved = np.linalg.solve(chol, a)
    return results.scale * np.sum(solved**2, axis=0) + unseen_var
