"""glmer fits against lme4 (tests/reference/glmm_*.json, made by make_reference.R with
bobyqa, rhoend = 1e-12, tolPwrss = 1e-12).

Pass criteria (issue 14): the log-likelihood is not lower than lme4's by more than 1e-6
relative; fixed effects within 5e-3 of their SE; SEs and θ within 5e-3 relative. The fits
here agree far closer (typically 1e-6), and the same tolerances are applied to the
conditional modes (relative to their conditional SD), the conditional SDs, fitted values,
residuals and predictions. For quadrature fits lme4's log-likelihood omits the saturated
log-likelihood (see mixedjax.results.glmm), which is added back before comparing.
"""

import json

import numpy as np
import pandas as pd
import pytest

import mixedjax
from tests.conftest import REFERENCE_DIR

DEFAULT = ["cbpp_laplace", "counts_slope", "cbpp_zero_herd", "binary_singular"]
SLOW = ["cbpp_agq25", "cbpp_probit", "cbpp_cloglog", "counts_agq25", "binary_slope", "cbpp_nagq0"]
CASES = DEFAULT + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW]


def load(case: str):
    ref = json.loads((REFERENCE_DIR / f"glmm_{case}.json").read_text())
    factors = list(ref["factors"]) + ["g"]
    data = pd.read_csv(REFERENCE_DIR / ref["data"], dtype={f: str for f in factors})
    return ref, data


@pytest.fixture(scope="module")
def fitted():
    cache = {}

    def get(case):
        if case not in cache:
            ref, data = load(case)
            model = mixedjax.glmer(
                ref["lme4_formula"], data, family=(ref["family"], ref["link"]), nAGQ=ref["nAGQ"]
            )
            cache[case] = (ref, data, model.fit())
        return cache[case]

    return get


def _concat(ref, key):
    return np.concatenate([np.asarray(r[key], float) for r in ref["ranef"]])


@pytest.mark.parametrize("case", CASES)
def test_loglik_fixed_effects_theta_and_ses_match_lme4(fitted, case):
    ref, _, fit = fitted(case)
    assert fit.converged
    llf_lme4 = fit.llf_lme4
    assert llf_lme4 >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
    assert abs(llf_lme4 - ref["loglik"]) <= 1e-6 * abs(ref["loglik"])  # and not far above
    se = np.asarray(ref["fixed"]["se"])
    assert np.all(np.abs(fit.fe_params.to_numpy() - ref["fixed"]["estimate"]) <= 5e-3 * se)
    np.testing.assert_allclose(fit.bse_fe.to_numpy(), se, rtol=5e-3)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=5e-3, atol=1e-6)
    np.testing.assert_allclose(fit.cov_fe.to_numpy(), ref["fixed"]["cov"], rtol=1e-2, atol=1e-5)
    np.testing.assert_allclose(fit.aic, ref["aic"] + 2 * (llf_lme4 - fit.llf), rtol=1e-8)
    np.testing.assert_allclose(fit.bic, ref["bic"] + 2 * (llf_lme4 - fit.llf), rtol=1e-8)
    assert fit.df_resid == ref["df_resid"]
    assert fit.is_singular == ref["singular"]
    assert fit.model.nobs == ref["n_obs"]


@pytest.mark.parametrize("case", CASES)
def test_varcorr_and_ranef_match_lme4(fitted, case):
    ref, _, fit = fitted(case)
    vc = fit.varcorr()
    for term in ref["random"]:
        cov = np.asarray(term["cov"], float).reshape(len(term["terms"]), -1)
        rows = vc[vc["group"] == term["group"]]
        variances = rows[rows["var2"].isna()]
        assert list(variances["var1"]) == list(term["terms"])
        np.testing.assert_allclose(variances["vcov"], np.diag(cov), rtol=1e-2, atol=1e-10)
    re = fit.ranef()
    sd = _concat(ref, "cond_sd")
    assert list(re["grp"]) == [lev for r in ref["ranef"] for lev in r["level"]]
    assert np.all(np.abs(re["condval"].to_numpy() - _concat(ref, "value")) <= 5e-3 * sd + 1e-10)
    np.testing.assert_allclose(re["condsd"], sd, rtol=5e-3, atol=1e-8)


@pytest.mark.parametrize("case", CASES)
def test_fitted_residuals_and_predictions_match_lme4(fitted, case):
    ref, data, fit = fitted(case)
    tol = dict(rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fit.fittedvalues[:20], ref["fitted_head"], **tol)
    np.testing.assert_allclose(fit.predict(type="link")[:20], ref["linear_predictor_head"], **tol)
    np.testing.assert_allclose(
        fit.predict(type="link", re_form=None)[:20], ref["population_link_head"], **tol
    )
    np.testing.assert_allclose(fit.resid_deviance()[:20], ref["deviance_residuals_head"], **tol)
    np.testing.assert_allclose(fit.resid_pearson()[:20], ref["pearson_residuals_head"], **tol)
    np.testing.assert_allclose(fit.deviance, ref["deviance"], rtol=1e-5)
    # the same predictions from newdata (the training rows)
    head = data.head(20)
    np.testing.assert_allclose(fit.predict(head, type="link"), ref["linear_predictor_head"], **tol)
    np.testing.assert_allclose(fit.predict(head), ref["fitted_head"], **tol)


@pytest.mark.slow
def test_laplace_and_quadrature_logliks_are_comparable(fitted):
    """Both llf values are the full marginal log-likelihood: for cbpp the 25-node value is
    the (near-)exact one, and Laplace is within a fraction of a unit of it."""
    _, _, laplace_fit = fitted("cbpp_laplace")
    ref_agq, _, agq_fit = fitted("cbpp_agq25")
    assert abs(laplace_fit.llf - agq_fit.llf) < 0.1
    np.testing.assert_allclose(agq_fit.llf, ref_agq["loglik"] + agq_fit.saturated_llf, rtol=1e-9)


def test_proportions_with_weights_fit_like_cbind(fitted):
    ref, data, fit = fitted("cbpp_laplace")
    prop = mixedjax.glmer("prop ~ period + (1 | herd)", data, "binomial", weights="size").fit()
    np.testing.assert_allclose(prop.llf, fit.llf, rtol=1e-12)
    np.testing.assert_allclose(prop.fe_params, fit.fe_params, rtol=1e-9)
    np.testing.assert_allclose(prop.bse_fe, fit.bse_fe, rtol=1e-7)


def test_summary_shows_lme4s_numbers(fitted):
    ref, _, fit = fitted("counts_slope")
    text = str(fit.summary())
    assert f"{ref['aic']:.1f}" in text and f"{ref['loglik']:.1f}" in text
    assert "poisson (log)" in text and "Laplace" in text
    coef = fit.summary().coefficients
    np.testing.assert_allclose(coef["Estimate"], ref["fixed"]["estimate"], rtol=1e-5)
    np.testing.assert_allclose(coef["z value"], coef["Estimate"] / coef["Std. Error"])


def test_new_levels_get_population_predictions(fitted):
    _, data, fit = fitted("counts_slope")
    new = data.head(3).assign(g=["unseen", "g01", "unseen"])
    link = fit.predict(new, type="link")
    population = fit.predict(new, type="link", re_form=None)
    np.testing.assert_allclose(link[[0, 2]], population[[0, 2]], rtol=1e-14)
    gamma = fit.random_effects["g01"]
    expected = population[1] + gamma["(Intercept)"] + gamma["x"] * data["x"].iloc[1]
    np.testing.assert_allclose(link[1], expected, rtol=1e-12)
    np.testing.assert_allclose(fit.predict(new), np.exp(link), rtol=1e-14)


@pytest.mark.slow
def test_nagq0_objective_and_pirls_fixed_effects_match_lme4(fitted):
    """nAGQ = 0 without a fit: at lme4's θ, β̃(θ) from the joint penalised IRLS and the
    deviance D(θ, β̃(θ)) are lme4's."""
    import jax
    import jax.numpy as jnp

    from mixedjax.engines import laplace_nagq0
    from mixedjax.engines.laplace_rows import group_rows

    ref, data = load("cbpp_nagq0")
    m = mixedjax.glmer(ref["lme4_formula"], data, family="binomial", nAGQ=0)
    rows, _ = group_rows(m.endog, m.weights, m.offset, m.exog, m.exog_re, m.group_codes,
                         m.n_groups)  # fmt: skip
    rows = type(rows)(*(jnp.asarray(a) for a in rows))
    theta = jnp.asarray(ref["theta"])

    @jax.jit
    def at(theta, rows):
        beta = laplace_nagq0.profiled_fixed_effects(m.family, m.structure, theta, rows,
                                                    jnp.zeros(m.k_fe))  # fmt: skip
        info = laplace_nagq0.fixed_effects_information(theta, beta, rows, m.family, m.structure)
        dev = laplace_nagq0.nagq0_deviance(theta, rows, beta, m.family, m.structure)
        return beta, info, dev

    beta, info, dev = at(theta, rows)
    np.testing.assert_allclose(dev, -2 * ref["loglik"], rtol=1e-9)
    np.testing.assert_allclose(beta, ref["fixed"]["estimate"], rtol=1e-7)
    se = np.sqrt(np.diag(np.linalg.inv(np.asarray(info))))
    np.testing.assert_allclose(se, ref["fixed"]["se"], rtol=1e-7)
