"""Fits are invariant to row order, group relabelling and padding of the group axis.

Tolerance: 1e-8 relative on llf, fixed effects, variances and BLUPs (the optimum is polished
to machine precision, so different summation orders only move the last digits).
"""

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.design.groups import pad_groups
from mixedjax.fit.estimation import deviance, estimates_at

RTOL = 1e-8


@pytest.fixture(scope="module")
def sleep():
    df = mixedjax.datasets.load("sleepstudy")
    model = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", df, groups="Subject", re_formula="~Days"
    )
    return df, model.fit()


def _fit(df):
    return mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", df, groups="Subject", re_formula="~Days"
    ).fit()


def _assert_same(a, b, blups_b=None):
    np.testing.assert_allclose(a.llf, b.llf, rtol=RTOL)
    np.testing.assert_allclose(a.fe_params, b.fe_params, rtol=RTOL)
    np.testing.assert_allclose(a.cov_re, b.cov_re, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(a.scale, b.scale, rtol=RTOL)
    blups_a = a.ranef().set_index(["term", "grp"])["condval"].sort_index()
    blups_b = (
        b.ranef().set_index(["term", "grp"])["condval"].sort_index() if blups_b is None else blups_b
    )
    np.testing.assert_allclose(blups_a.to_numpy(), blups_b.to_numpy(), rtol=1e-6, atol=1e-8)


def test_row_order(sleep):
    df, base = sleep
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    res = _fit(shuffled)
    _assert_same(res, base)
    # fitted values follow the rows
    order = df.sample(frac=1.0, random_state=3).index.to_numpy()
    np.testing.assert_allclose(res.fittedvalues, base.fittedvalues[order], rtol=1e-8)


def test_group_relabelling(sleep):
    df, base = sleep
    relabel = {s: f"S{(int(s) * 7919) % 1000:03d}" for s in df["Subject"].unique()}
    res = _fit(df.assign(Subject=df["Subject"].map(relabel)))
    np.testing.assert_allclose(res.llf, base.llf, rtol=RTOL)
    np.testing.assert_allclose(res.fe_params, base.fe_params, rtol=RTOL)
    for old, new in relabel.items():
        np.testing.assert_allclose(
            res.random_effects[new].to_numpy(), base.random_effects[old].to_numpy(), rtol=1e-6
        )


def test_padding_groups_changes_nothing(sleep):
    _, base = sleep
    model = base.model
    theta = np.asarray(base.theta)
    padded = pad_groups(model.data, model.data.ZtZ.shape[0] + 40)
    d0 = deviance(theta, model.data, structure=model.structure, reml=True)
    d1 = deviance(theta, padded, structure=model.structure, reml=True)
    np.testing.assert_allclose(float(d1), float(d0), rtol=1e-13)
    e0 = estimates_at(theta, model.data, structure=model.structure, reml=True)
    e1 = estimates_at(theta, padded, structure=model.structure, reml=True)
    np.testing.assert_allclose(e1.beta, e0.beta, rtol=1e-12)
    np.testing.assert_allclose(e1.blups[: model.n_groups], e0.blups[: model.n_groups], rtol=1e-10)
    np.testing.assert_allclose(e1.blups[model.data.ZtZ.shape[0] :], 0.0, atol=0)


def test_array_and_formula_interfaces_agree(sleep):
    df, base = sleep
    X = np.column_stack([np.ones(len(df)), df["Days"]])
    res = mixedjax.MixedLM(df["Reaction"].to_numpy(), X, df["Subject"].to_numpy(), exog_re=X).fit()
    np.testing.assert_allclose(res.llf, base.llf, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(res.fe_params), np.asarray(base.fe_params), rtol=RTOL)
    pd.testing.assert_index_equal(base.fe_params.index, pd.Index(["Intercept", "Days"]))
