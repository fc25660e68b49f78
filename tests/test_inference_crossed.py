"""Inference for the crossed engine (``MixedLMResults`` of a crossed-engine ``MixedLM``).

Oracles: lmerTest/pbkrtest numbers in the reference JSONs (Satterthwaite and Kenward-Roger
df, KR-adjusted SEs; asserted to 1e-4 relative, the issue asks 1e-3); a dense numpy REML
likelihood of Penicillin (``Σ = σ²I + Σ_k ψ_k Z_k Z_k'`` formed for all 144 rows, no JAX)
differentiated by central finite differences for the Wald covariance; the one-factor
engine on the same model for the covariance layout of a correlated (q = 2) term and for a
term held on the boundary.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference

import mixedjax
from mixedjax.spec.terms import RandomTerm

RTOL = 1e-4


@pytest.fixture(scope="module")
def penicillin():
    ref, data = load_reference("penicillin_reml")
    model = mixedjax.mixedlm(ref["lme4_formula"], data)
    return ref, data, model, model.fit()


def test_crossed_coef_table_matches_lmertest_and_pbkrtest(penicillin):
    ref, _, _, res = penicillin
    assert type(res) is mixedjax.MixedLMResults
    fixed = ref["fixed"]
    satt = res.coef_table(ddf="satterthwaite")
    np.testing.assert_allclose(satt["df"], fixed["df_satterthwaite"], rtol=RTOL)
    np.testing.assert_allclose(satt["se"], fixed["se"], rtol=1e-6)
    kr = res.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(kr["df"], fixed["df_kenward_roger"], rtol=RTOL)
    np.testing.assert_allclose(kr["se"], fixed["se_kenward_roger"], rtol=RTOL)
    assert list(satt.index) == ["Intercept"]
    resid = res.coef_table(ddf="residual")
    np.testing.assert_allclose(resid["df"], 143)
    asym = res.coef_table(ddf="asymptotic")
    # statsmodels' tvalues/pvalues cover every parameter, the fixed effects first
    np.testing.assert_allclose(asym["p"], res.pvalues.iloc[: res.k_fe], rtol=1e-12)
    np.testing.assert_allclose(res.tvalues, res.params / res.bse, rtol=1e-15)
    # a one-row F test is the square of the t test, with the same df
    t = res.t_test("Intercept = 22")
    f = res.wald_test("Intercept = 22")
    np.testing.assert_allclose(f.fvalue, t.tvalue[0] ** 2, rtol=1e-10)
    np.testing.assert_allclose(f.df_denom, t.df_denom[0], rtol=1e-10)
    np.testing.assert_allclose(f.pvalue, t.pvalue[0], rtol=1e-8)


def test_crossed_params_layout_and_wald_intervals(penicillin):
    _, _, _, res = penicillin
    assert list(res.params.index) == ["Intercept", "plate Var", "sample Var"]
    cov = res.cov_params()
    assert list(cov.index) == list(res.params.index)
    np.testing.assert_allclose(cov.iloc[:1, :1], res._cov_fe, rtol=1e-15)
    np.testing.assert_allclose(
        res.params.iloc[1:] * res.scale, [res.vcomp[0], res.vcomp[1]], rtol=1e-12
    )
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(cov)), rtol=1e-15)
    ci = res.conf_int()
    z = 1.959963984540054
    np.testing.assert_allclose(ci[1] - res.params, z * res.bse, rtol=1e-8)
    assert np.isfinite(res.aic) and np.isfinite(res.bic)
    conv = res.check_convergence()
    assert conv.converged and conv.positive_definite
    assert conv.hessian_eigenvalues.shape == (2,)
    assert np.max(np.abs(conv.gradient)) < 1e-6
    # the optimisation summary reports the same derivatives, with lme4's θ names
    np.testing.assert_array_equal(res.optim.hessian_eigenvalues, conv.hessian_eigenvalues)
    assert res._theta_names() == ["sd_(Intercept)|plate", "sd_(Intercept)|sample"]
    assert "Hessian eig.    [" in str(res.optim)


def _dense_reml_deviance(gamma, y, Zs, X):
    """-2 log L_REML at data-scale (ψ_1, ..., σ²), β profiled out (dense, numpy)."""
    n, p = X.shape
    V = gamma[-1] * np.eye(n) + sum(g * Z @ Z.T for g, Z in zip(gamma[:-1], Zs, strict=True))
    Vi_X = np.linalg.solve(V, X)
    XVX = X.T @ Vi_X
    beta = np.linalg.solve(XVX, Vi_X.T @ y)
    r = y - X @ beta
    return (
        (n - p) * np.log(2 * np.pi)
        + np.linalg.slogdet(V)[1]
        + np.linalg.slogdet(XVX)[1]
        + r @ np.linalg.solve(V, r)
    )


def test_crossed_wald_covariance_matches_dense_finite_differences(penicillin):
    _, data, _, res = penicillin
    y = data["diameter"].to_numpy(float)
    X = np.ones((len(y), 1))
    Zs = [pd.get_dummies(data[c]).to_numpy(float) for c in ("plate", "sample")]
    gamma = res._phi  # (plate var, sample var, σ²) on the data scale
    h = 1e-4 * gamma
    k = gamma.size
    H = np.zeros((k, k))
    for i in range(k):  # central second differences of the dense deviance
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            f = [
                _dense_reml_deviance(gamma + si * ei + sj * ej, y, Zs, X)
                for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))
            ]
            H[i, j] = (f[0] - f[1] - f[2] + f[3]) / (4 * h[i] * h[j])
    expected = np.linalg.inv(0.5 * H)
    actual = res.cov_re_params.to_numpy()
    # variances to 1e-5 relative; covariances relative to the SDs (the tiny cross terms,
    # correlations ~1e-4, carry the differences' rounding error)
    sd = np.sqrt(np.diag(expected))
    np.testing.assert_allclose(np.sqrt(np.diag(actual)), sd, rtol=1e-5)
    np.testing.assert_allclose(actual / np.outer(sd, sd), expected / np.outer(sd, sd), atol=1e-5)
    np.testing.assert_allclose(res.bse_re, sd[:-1], rtol=1e-5)


@pytest.mark.slow
def test_crossed_ml_satterthwaite_and_statsmodels_route():
    ref, data = load_reference("penicillin_ml")
    res = mixedjax.mixedlm(ref["lme4_formula"], data).fit(reml=False)
    table = res.coef_table()
    np.testing.assert_allclose(table["df"], ref["fixed"]["df_satterthwaite"], rtol=RTOL)
    with pytest.raises(ValueError, match="REML"):
        res.coef_table(ddf="kenward-roger")
    # statsmodels' spelling: the same numbers under statsmodels' names
    sm = mixedjax.MixedLM.from_formula(
        "diameter ~ 1",
        data.assign(ONE=1),
        groups="ONE",
        vc_formula={"sample": "0 + C(sample)", "plate": "0 + C(plate)"},
    ).fit(reml=False)
    assert list(sm.params.index) == ["Intercept", "plate Var", "sample Var"]
    np.testing.assert_allclose(sm.bse, res.bse, rtol=1e-6)


def _sleepstudy_crossed_engine():
    ref, data = load_reference("sleepstudy_reml")
    codes, levels = pd.factorize(data["Subject"], sort=True)
    term = RandomTerm(
        "Subject",
        ("(Intercept)", "Days"),
        np.column_stack([np.ones(len(data)), data["Days"].to_numpy(float)]),
        codes,
        np.asarray(levels).astype(str),
    )
    X = np.column_stack([np.ones(len(data)), data["Days"].to_numpy(float)])
    model = mixedjax.MixedLM.from_terms(
        data["Reaction"].to_numpy(float), X, [term], ["Intercept", "Days"], "Reaction"
    )
    return ref, data, model


def test_correlated_term_matches_the_one_factor_engine():
    ref, data, model = _sleepstudy_crossed_engine()
    res = model.fit()
    one = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", data, groups="Subject", re_formula="~Days"
    ).fit()
    assert list(res.params.index[2:]) == [
        "Subject (Intercept) Var",
        "Subject (Intercept) x Days Cov",
        "Subject Days Var",
    ]
    np.testing.assert_allclose(res.params.to_numpy(), one.params.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(res.bse_re.to_numpy(), one.bse_re.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(res.bse.to_numpy(), one.bse.to_numpy(), rtol=1e-5)
    kr = res.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(kr["df"], ref["fixed"]["df_kenward_roger"], rtol=RTOL)
    np.testing.assert_allclose(kr["se"], ref["fixed"]["se_kenward_roger"], rtol=RTOL)
    satt = res.coef_table()
    np.testing.assert_allclose(satt["df"], ref["fixed"]["df_satterthwaite"], rtol=RTOL)


def test_term_held_at_zero_is_left_out_of_the_information(penicillin):
    _, data, model, _ = penicillin
    # θ order: plate (24 levels), sample (6): hold the plate variance at exactly zero
    held = model.fit(start_params=np.array([0.0, 1.0]), free=np.array([0, 1]))
    with pytest.warns(UserWarning, match=r"\['plate'\].*boundary"):
        bse_re = held.bse_re
    one = mixedjax.mixedlm("diameter ~ 1 + (1 | sample)", data).fit()
    assert np.isnan(bse_re["plate Var"])
    np.testing.assert_allclose(bse_re["sample Var"], one.bse_re.iloc[0], rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bse = held.bse
    assert np.isnan(bse["plate Var"]) and np.isfinite(bse["sample Var"])
    np.testing.assert_allclose(bse["Intercept"], one.bse["Intercept"], rtol=1e-5)


# R 4.2.2, lme4 1.1-31, on tests/reference/data/penicillin.csv:
# confint(lmer(diameter ~ 1 + (1 | plate) + (1 | sample), d), method = "profile",
#         oldNames = FALSE)
PENICILLIN_PROFILE = {
    "sd_(Intercept)|plate": (0.633565966937, 1.182103991432),
    "sd_(Intercept)|sample": (1.095789188180, 3.556291636840),
    "sigma": (0.485845400184, 0.629453478454),
    "(Intercept)": (21.266627383624, 24.677817616174),
}


@pytest.mark.slow  # about 40 jitted constrained refits of the crossed engine (~1 min)
def test_crossed_profile_ci_matches_lme4(penicillin):
    _, _, _, res = penicillin
    ci = res.conf_int(method="profile")
    assert list(ci.index) == list(PENICILLIN_PROFILE)
    bounds = np.array(list(PENICILLIN_PROFILE.values()))
    np.testing.assert_allclose(ci["lower"], bounds[:, 0], rtol=1e-3)
    np.testing.assert_allclose(ci["upper"], bounds[:, 1], rtol=1e-3)
