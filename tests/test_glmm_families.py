"""Families and links (mixedjax.core.families) against SciPy's distributions and special
functions, finite differences, and the definitions of the deviance residuals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import mixedjax
from mixedjax.families import Binomial, Gamma, InverseGaussian, Link, Poisson, family_from_name

ETA = np.linspace(-6.0, 4.0, 41)


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog", "log"])
def test_link_inverse_and_derivative(name):
    link = Link(name)
    mu = {
        "logit": special.expit(ETA),
        "probit": special.ndtr(ETA),
        "cloglog": -np.expm1(-np.exp(ETA)),
        "log": np.exp(ETA),
    }[name]
    np.testing.assert_allclose(link.inverse(jnp.asarray(ETA)), mu, rtol=1e-13)
    inside = ETA < 3.0  # beyond, a cloglog mean rounds to 1
    np.testing.assert_allclose(link(jnp.asarray(mu))[inside], ETA[inside], rtol=1e-9, atol=1e-9)
    h = 1e-6
    fd = (np.asarray(link.inverse(jnp.asarray(ETA + h))) - link.inverse(jnp.asarray(ETA - h))) / (
        2 * h
    )
    # central differences: absolute error ~ eps / h = 1e-10
    np.testing.assert_allclose(link.mu_eta(jnp.asarray(ETA)), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog"])
def test_binomial_log_mean_pairs_are_accurate_in_the_tails(name):
    link = Link(name)
    eta = jnp.asarray([-30.0, -8.0, 0.3, 8.0, 3.5])
    log_mu, log_1m = link.log_mu_pair(eta)
    e = np.asarray(eta)
    expected_mu, expected_1m = {
        "logit": (special.log_expit(e), special.log_expit(-e)),
        "probit": (special.log_ndtr(e), special.log_ndtr(-e)),
        "cloglog": (np.log(-np.expm1(-np.exp(e))), -np.exp(e)),
    }[name]
    np.testing.assert_allclose(log_mu, expected_mu, rtol=1e-12)
    np.testing.assert_allclose(log_1m, expected_1m, rtol=1e-12)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binomial_loglik_is_scipy_binom(link):
    trials = np.array([1.0, 1.0, 10.0, 7.0, 3.0, 12.0])
    successes = np.array([0.0, 1.0, 3.0, 7.0, 0.0, 5.0])
    eta = np.array([-0.5, 1.2, -0.8, 2.0, -1.0, 0.1])
    fam = Binomial(link)
    mu = np.asarray(fam.mean(jnp.asarray(eta)))
    got = fam.loglik(jnp.asarray(successes / trials), jnp.asarray(eta), jnp.asarray(trials))
    np.testing.assert_allclose(got, stats.binom.logpmf(successes, trials, mu), rtol=1e-12)


def test_poisson_gamma_inverse_gaussian_logliks_are_scipy():
    y = np.array([0.0, 1.0, 4.0, 9.0])
    eta = np.array([0.2, -0.3, 1.1, 2.0])
    w = np.array([1.0, 2.0, 0.5, 1.0])
    got = Poisson().loglik(jnp.asarray(y), jnp.asarray(eta), jnp.asarray(w))
    np.testing.assert_allclose(got, w * stats.poisson.logpmf(y, np.exp(eta)), rtol=1e-12)
    yp, phi = np.array([0.3, 1.0, 2.5, 7.0]), 0.4
    mu = np.exp(eta)
    got = Gamma("log").loglik(jnp.asarray(yp), jnp.asarray(eta), jnp.asarray(w), phi)
    expected = w * stats.gamma.logpdf(yp, a=1 / phi, scale=mu * phi)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    got = InverseGaussian("log").loglik(jnp.asarray(yp), jnp.asarray(eta), jnp.asarray(w), phi)
    # scipy's invgauss(mu/λ, scale=λ) has mean mu and shape λ = 1/φ
    lam = 1 / phi
    expected = w * stats.invgauss.logpdf(yp, mu / lam, scale=lam)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "family, y, w",
    [
        (Binomial("probit"), np.array([0.0, 0.3, 1.0, 0.5]), np.array([1.0, 10.0, 4.0, 2.0])),
        (Poisson(), np.array([0.0, 2.0, 5.0, 1.0]), np.array([1.0, 1.0, 2.0, 3.0])),
        (Gamma("log"), np.array([0.2, 2.0, 5.0, 1.0]), np.ones(4)),
        (InverseGaussian("log"), np.array([0.2, 2.0, 5.0, 1.0]), np.ones(4)),
    ],
)
def test_unit_deviance_is_twice_the_loglik_gap_to_the_saturated_model(family, y, w):
    eta = jnp.asarray([0.1, -0.4, 1.3, 0.0])
    mu = family.mean(eta)
    phi = 1.0
    sat = family.loglik(jnp.asarray(y), family.link(jnp.clip(jnp.asarray(y), 1e-300)), w, phi)
    if family.name == "binomial":  # the saturated model's log(0) terms are 0
        sat = stats.binom.logpmf(w * y, w, y)
    expected = 2 * (np.asarray(sat) - np.asarray(family.loglik(jnp.asarray(y), eta, w, phi)))
    np.testing.assert_allclose(family.unit_deviance(jnp.asarray(y), mu, w), expected, atol=1e-11)
    resid = family.deviance_residuals(jnp.asarray(y), mu, jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(resid) ** 2, expected, atol=1e-11)
    assert np.all(np.sign(resid) == np.sign(y - np.asarray(mu)))


@pytest.mark.parametrize("family", [Binomial("cloglog"), Poisson(), Gamma("log")])
def test_working_weights_are_the_expected_information(family):
    """w (dμ/dη)² / V(μ) is E[-∂²ℓ/∂η²]: checked against the observed information averaged
    over the distribution (exact sums for binomial and Poisson; Gamma: E[y] = μ)."""
    eta = jnp.asarray([-0.7, 0.4])
    w = jnp.asarray([5.0, 2.0])
    second = jax.vmap(jax.grad(jax.grad(lambda y, e, wt: family.loglik(y, e, wt), 1), 1))
    mu = np.asarray(family.mean(eta))
    expected = []
    for k in range(2):
        if family.name == "binomial":
            n = int(w[k])
            ys = np.arange(n + 1) / n
            probs = stats.binom.pmf(np.arange(n + 1), n, mu[k])
        elif family.name == "poisson":
            ys = np.arange(80.0)
            probs = stats.poisson.pmf(ys, mu[k])
        else:  # ∂²ℓ/∂η² is linear in y for the Gamma with a log link
            ys, probs = np.array([mu[k]]), np.array([1.0])
        obs = second(jnp.asarray(ys), jnp.full(ys.shape, eta[k]), jnp.full(ys.shape, w[k]))
        expected.append(-np.sum(probs * np.asarray(obs)))
    np.testing.assert_allclose(family.working_weights(eta, w), expected, rtol=1e-10)


def test_support_checks_name_the_column():
    with pytest.raises(ValueError, match="'prop'.*proportion"):
        Binomial().check_response(np.array([0.2, 1.5]), np.ones(2), "prop")
    with pytest.raises(ValueError, match="'prop'.*whole numbers"):
        Binomial().check_response(np.array([0.25, 0.5]), np.array([3.0, 2.0]), "prop")
    with pytest.raises(ValueError, match="'y'.*non-negative"):
        Poisson().check_response(np.array([1.0, -1.0]), np.ones(2), "y")
    with pytest.raises(ValueError, match="'y'.*whole counts"):
        Poisson().check_response(np.array([1.0, 2.5]), np.ones(2), "y")
    with pytest.raises(ValueError, match="'t'.*positive"):
        Gamma().check_response(np.array([1.0, 0.0]), np.ones(2), "t")
    with pytest.raises(ValueError, match="'y'.*missing"):
        Poisson().check_response(np.array([1.0, np.nan]), np.ones(2), "y")
    Binomial().check_response(np.array([0.0, 0.25, 1.0]), np.array([1.0, 4.0, 3.0]), "ok")


def test_family_from_name_and_bad_links():
    assert family_from_name("binomial") == Binomial()
    assert family_from_name(("binomial", "cloglog")).link.name == "cloglog"
    assert family_from_name(Poisson) == Poisson()
    assert mixedjax.families.Binomial is Binomial
    with pytest.raises(ValueError, match="family must be one of"):
        family_from_name("gaussianish")
    with pytest.raises(ValueError, match="takes a link in"):
        Poisson("logit")
    with pytest.raises(ValueError, match="link must be one of"):
        Link("cauchit")
    with pytest.raises(TypeError, match="family must be a name"):
        family_from_name(3)
