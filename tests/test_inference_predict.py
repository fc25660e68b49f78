"""Prediction, prediction-error variances and simulation.

Oracles: the fit's own fitted values (1e-10), the dense Henderson mixed-model equations
(the inverse of ``[[X'X, X'Z], [Z'X, Z'Z + σ²G⁻¹]]`` times σ² is the joint covariance of
``(β̂ - β, b̂ - b)``; 1e-8 relative), and the moments of 4000 simulated responses (fixed
seed; tolerances of about 4 Monte Carlo standard errors).
"""

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference
from inference_helpers import fit_reference

import mixedjax


def test_predict_training_rows():
    _, model, res = fit_reference("sleepstudy_reml")
    np.testing.assert_allclose(res.predict(), res.fittedvalues, rtol=1e-12)
    np.testing.assert_allclose(
        res.predict(include_random=False), model.exog @ res.fe_params.to_numpy(), rtol=1e-12
    )
    _, data = load_reference("sleepstudy_reml")
    np.testing.assert_allclose(res.predict(data), res.fittedvalues, rtol=1e-10)
    # a new subject falls back to the population line; allow_new_levels=False refuses it
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["new", "308"]})
    pred = res.predict(new)
    np.testing.assert_allclose(pred[0], res.fe_params["Intercept"], rtol=1e-12)
    np.testing.assert_allclose(pred[1], res.fittedvalues[5], rtol=1e-10)
    with pytest.raises(ValueError, match="not seen"):
        res.predict(new, allow_new_levels=False)
    with pytest.raises(ValueError, match="Subject"):
        res.predict(pd.DataFrame({"Days": [1.0]}))


def test_prediction_error_variance_matches_dense_henderson():
    _, model, res = fit_reference("sleepstudy_reml")
    _, data = load_reference("sleepstudy_reml")
    X = model.exog
    n_groups, q = model.n_groups, model.k_re
    Z = np.zeros((model.nobs, n_groups * q))
    for j in range(q):  # dense oracle: one column block per random-effect term
        Z[np.arange(model.nobs), model.group_codes * q + j] = model.exog_re[:, j]
    G = np.kron(np.eye(n_groups), res.cov_re.to_numpy())
    s2 = res.scale
    mme = np.block([[X.T @ X, X.T @ Z], [Z.T @ X, Z.T @ Z + s2 * np.linalg.inv(G)]])
    C = s2 * np.linalg.inv(mme)
    np.testing.assert_allclose(C[:2, :2], res.cov_params().to_numpy()[:2, :2], rtol=1e-8)
    W = np.hstack([X, Z])
    se_dense = np.sqrt(np.einsum("ij,jk,ik->i", W, C, W))
    frame = res.predict(data, interval="confidence")
    np.testing.assert_allclose(frame["se"], se_dense, rtol=1e-8)
    pframe = res.predict(interval="prediction")
    np.testing.assert_allclose(pframe["se"] ** 2, se_dense**2 + s2, rtol=1e-8)
    np.testing.assert_allclose(pframe["upper"] - pframe["predicted"], 1.959964 * pframe["se"])
    # a new subject: fixed part's variance plus the prior variance of its random effects
    new = pd.DataFrame({"Days": [3.0], "Subject": ["new"]})
    x = np.array([1.0, 3.0])
    var = x @ res.cov_params().to_numpy()[:2, :2] @ x + x @ res.cov_re.to_numpy() @ x
    np.testing.assert_allclose(res.predict(new, interval="confidence")["se"] ** 2, var, rtol=1e-10)


def test_simulate_moments():
    _, model, res = fit_reference("dyestuff_reml")
    sims = res.simulate(4000, seed=1)
    assert sims.shape == (4000, model.nobs)
    np.testing.assert_array_equal(sims, res.simulate(4000, seed=1))
    mean = res.fe_params["Intercept"]
    tau, s2 = res.cov_re.iloc[0, 0], res.scale
    se_mean = np.sqrt((tau + s2 / 5) / 6 / 4000)
    assert abs(sims.mean() - mean) < 4 * se_mean
    # within a batch: var tau + s2, covariance tau; across batches: 0
    cov = np.cov(sims[:, [0, 1, 5]].T)
    np.testing.assert_allclose(cov[0, 0], tau + s2, rtol=0.1)
    np.testing.assert_allclose(cov[0, 1], tau, rtol=0.2)
    assert abs(cov[0, 2]) < 4 * (tau + s2) / np.sqrt(4000)
    with pytest.raises(ValueError, match="positive"):
        res.simulate(0)


def test_lme4_formula_models_predict_newdata():
    """An lme4-formula model predicts new rows as the same model built from statsmodels'
    arguments does (1e-10), its own rows as its fitted values, and a nested level it never
    saw with that level's prior variance added (a wider interval)."""
    df = mixedjax.datasets.load("sleepstudy")
    lme4 = mixedjax.mixedlm("Reaction ~ Days + (Days | Subject)", df).fit()
    sm = mixedjax.mixedlm("Reaction ~ Days", df, groups="Subject", re_formula="~Days").fit()
    new = pd.DataFrame({"Days": [0, 10, 3], "Subject": ["308", "unseen", "309"]})
    for interval in (None, "confidence", "prediction"):
        a, b = lme4.predict(new, interval=interval), sm.predict(new, interval=interval)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10)
    np.testing.assert_allclose(lme4.predict(df), lme4.fittedvalues, rtol=1e-12)

    pastes = mixedjax.datasets.load("pastes")
    nested = mixedjax.mixedlm("strength ~ 1 + (1 | batch/cask)", pastes).fit()
    np.testing.assert_allclose(nested.predict(pastes), nested.fittedvalues, rtol=1e-12)
    rows = pastes.iloc[[0, 0]].copy()
    rows.iloc[1, rows.columns.get_loc("cask")] = "never seen"
    frame = nested.predict(rows, interval="confidence")
    batch_only = nested.predict(rows, include_random=True).tolist()
    assert batch_only[0] != batch_only[1]  # the unseen cask gets no cask effect
    cask_var = nested.varcorr().set_index("group").loc["batch:cask", "vcov"]
    assert frame["se"].iloc[1] ** 2 > frame["se"].iloc[0] ** 2
    assert frame["se"].iloc[1] ** 2 >= cask_var
