"""GLMMs with an estimated dispersion (Gamma, inverse Gaussian): ``θ, β`` and ``log φ``
are estimated together on the Laplace / adaptive Gauss–Hermite deviance.

Oracles:
- glmmTMB's Laplace fit of a Gamma GLMM with the canonical (inverse) link
  (``tests/reference/make_reference_glmmtmb.R``; there glmmTMB's observed-information
  Laplace and the PIRLS (Fisher-weight) Laplace used here are the same approximation):
  log-likelihood not lower by more than 1e-6 relative, fixed effects within 5e-3 of their
  SE, SEs, dispersion and random-effect variance within 5e-3 relative (glmmTMB stops at a
  gradient of 5e-4, so its numbers are not tighter than that);
- brute-force quadrature of the exact marginal likelihood (a 4,001-point grid per group)
  against the adaptive Gauss–Hermite deviance, to 1e-9 relative, for the Gamma (25 nodes)
  and inverse Gaussian (80 nodes: its skewed conditional densities leave 25 nodes 8e-7
  off) families with the log link;
- central finite differences of the deviance in ``(θ, β, log φ)`` against its autodiff
  gradient (1e-6 relative).
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedjax
from mixedjax.core.covariance import CovStructure
from mixedjax.engines.laplace_rows import group_rows
from mixedjax.families import Gamma, InverseGaussian
from mixedjax.fit import glmm as glmm_fit

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def gamma_reference():
    ref = json.loads((REFERENCE / "glmm_gamma_inverse.json").read_text())
    data = pd.read_csv(REFERENCE / ref["data"])
    fit = mixedjax.glmer(ref["lme4_formula"], data, family=Gamma("inverse")).fit()
    return ref, fit


def test_gamma_matches_glmmtmb(gamma_reference):
    ref, fit = gamma_reference
    assert fit.converged
    assert fit.llf >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
    se = np.asarray(ref["fixed"]["se"])
    assert np.all(np.abs(fit.fe_params.to_numpy() - ref["fixed"]["estimate"]) <= 5e-3 * se)
    np.testing.assert_allclose(fit.bse_fe.to_numpy(), se, rtol=5e-3)
    np.testing.assert_allclose(fit.dispersion, ref["dispersion"], rtol=5e-3)
    vc = fit.varcorr()
    np.testing.assert_allclose(vc["vcov"].iloc[0], ref["random"][0]["cov"][0][0], rtol=5e-3)
    # lme4's conventions: θ relative to the residual scale, Residual row = φ, npar counts φ
    np.testing.assert_allclose(fit.theta[0] ** 2 * fit.dispersion, vc["vcov"].iloc[0])
    assert vc["group"].iloc[-1] == "Residual"
    np.testing.assert_allclose(vc["vcov"].iloc[-1], fit.dispersion)
    np.testing.assert_allclose(fit.aic, ref["aic"], rtol=1e-6)
    assert "Residual" in str(fit.summary())


def _tiny(family, seed):
    rng = np.random.default_rng(seed)
    n_groups, per = 6, 4
    codes = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=codes.size)
    mu = np.exp(0.3 + 0.4 * x + rng.normal(0, 0.5, n_groups)[codes])
    if isinstance(family, Gamma):
        y = rng.gamma(2.0, mu / 2.0)
    else:
        y = rng.wald(mu, 4.0)
    X = np.column_stack([np.ones_like(x), x])
    rows, _ = group_rows(y, np.ones_like(y), np.zeros_like(y), X, np.ones((y.size, 1)),
                         codes, n_groups)  # fmt: skip
    return rows, y, X, codes


def _log_density(family, y, mu, phi):
    if isinstance(family, Gamma):
        return stats.gamma.logpdf(y, a=1.0 / phi, scale=mu * phi)
    # inverse Gaussian with mean mu and dispersion phi (variance phi mu^3)
    return -0.5 * (np.log(2 * np.pi * phi * y**3) + (y - mu) ** 2 / (phi * y * mu**2))


def _brute_force_minus2loglik(family, y, X, codes, theta, beta, phi):
    """``-2 log ∫ Π_t p(y_t | b) N(b; 0, θ²) db`` per group on a fine grid, summed."""
    b = np.linspace(-12 * theta, 12 * theta, 4001)
    total = 0.0
    for group in np.unique(codes):  # test oracle: a loop over 6 groups is fine here
        rows = codes == group
        eta = (X[rows] @ beta)[:, None] + b[None, :]
        log_integrand = _log_density(family, y[rows][:, None], np.exp(eta), phi).sum(0)
        log_integrand += stats.norm.logpdf(b, scale=theta)
        top = log_integrand.max()
        integral = np.trapezoid(np.exp(log_integrand - top), b)
        total += -2.0 * (top + np.log(integral))
    return total


@pytest.mark.parametrize(
    "family, n_nodes", [(Gamma("log"), 25), (InverseGaussian("log"), 80)], ids=["gamma", "ig"]
)
def test_quadrature_deviance_is_the_exact_marginal_likelihood(family, n_nodes):
    rows, y, X, codes = _tiny(family, seed=4)
    rows = type(rows)(*(jnp.asarray(a) for a in rows))
    theta, beta, phi = 0.5, np.array([0.3, 0.4]), 0.45
    x = jnp.asarray(np.concatenate([[theta], beta, [np.log(phi)]]))
    ours = glmm_fit.deviance(x, rows, family, CovStructure(1), n_nodes)
    oracle = _brute_force_minus2loglik(family, y, X, codes, theta, beta, phi)
    np.testing.assert_allclose(float(ours), oracle, rtol=1e-9)


def test_deviance_gradient_in_log_dispersion_matches_finite_differences():
    family = Gamma("log")
    rows, *_ = _tiny(family, seed=5)
    rows = type(rows)(*(jnp.asarray(a) for a in rows))
    x = jnp.asarray([0.6, 0.2, 0.5, np.log(0.7)])

    def deviance(v):
        return glmm_fit.deviance(v, rows, family, CovStructure(1), 1)

    grad = np.asarray(jax.grad(deviance)(x))
    h = 1e-5
    fd = [(float(deviance(x + h * e)) - float(deviance(x - h * e))) / (2 * h) for e in np.eye(4)]
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_dispersion_families_outside_the_one_factor_engine_are_refused():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "y": rng.gamma(2.0, 1.0, 40),
            "a": np.repeat(np.arange(8), 5).astype(str),
            "b": np.tile(np.arange(5), 8).astype(str),
        }
    )
    with pytest.raises(ValueError, match="several grouping factors"):
        mixedjax.glmer("y ~ 1 + (1 | a) + (1 | b)", df, family="Gamma")
    with pytest.raises(ValueError, match="nAGQ = 0"):
        mixedjax.glmer("y ~ 1 + (1 | a)", df, family="Gamma", nAGQ=0)
    with pytest.raises(ValueError, match="must be positive"):
        mixedjax.glmer("y ~ 1 + (1 | a)", df.assign(y=df.y - 3), family="Gamma")


@pytest.mark.slow  # compiles the batched Gamma program (~20 s)
def test_fit_many_estimates_the_dispersion_of_each_response(gamma_reference):
    ref, fit = gamma_reference
    y = fit.model.endog
    batch = fit.model.fit_many(np.column_stack([y, 2.0 * y]))
    np.testing.assert_allclose(batch.llf[0], fit.llf, rtol=1e-9)
    np.testing.assert_allclose(batch.dispersion[0], fit.dispersion, rtol=1e-6)
    np.testing.assert_allclose(batch.theta[0], fit.theta, rtol=1e-5)
    # y -> 2y under the inverse link: η, so β and the random effects (θ), halve; φ stays;
    # the log-likelihood drops by n log 2 (the Jacobian)
    np.testing.assert_allclose(batch.fe_params.iloc[1], fit.fe_params / 2, rtol=1e-6)
    np.testing.assert_allclose(batch.dispersion[1], fit.dispersion, rtol=1e-6)
    np.testing.assert_allclose(batch.theta[1] * 2, fit.theta, rtol=1e-5)
    np.testing.assert_allclose(batch.llf[1], fit.llf - y.size * np.log(2.0), rtol=1e-9)
