"""The GLMM deviance against independent oracles on tiny problems.

* brute-force quadrature (scipy.integrate.quad of p(y_i | u) φ(u), SciPy's distributions)
  for the marginal likelihood: the adaptive Gauss–Hermite deviance converges to it;
* an independent NumPy/SciPy Laplace approximation (modes by scipy.optimize, Fisher
  weights written out by hand) for one and two random effects per group;
* central finite differences for the autodiff gradient (through the implicitly
  differentiated conditional modes) and, in the slow run, for the Hessian.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from mixedjax.core.covariance import CovStructure
from mixedjax.core.families import Binomial, Poisson
from mixedjax.engines import laplace
from mixedjax.engines.laplace_rows import group_rows
from mixedjax.fit.glmm import deviance

LAPLACE = jax.jit(laplace.laplace_deviance, static_argnums=(3, 4))


def tiny_binomial():
    """5 groups of 2-4 binomial rows; the last group has no successes at all."""
    codes = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4])
    trials = np.array([3, 1, 4, 2, 5, 1, 1, 2, 6, 3, 2, 2, 3, 1], float)
    successes = np.array([1, 1, 3, 0, 2, 1, 0, 2, 5, 1, 1, 0, 0, 0], float)
    x = np.linspace(-1, 1, codes.size)
    X = np.column_stack([np.ones(codes.size), x])
    return codes, successes, trials, X


def tiny_poisson_slope():
    rng = np.random.default_rng(7)
    codes = np.repeat(np.arange(4), [3, 5, 4, 2])
    x = np.round(rng.uniform(-1, 1, codes.size), 2)
    X = np.column_stack([np.ones(codes.size), x])
    offset = np.round(rng.normal(0, 0.3, codes.size), 2)
    y = np.array([0, 2, 1, 4, 3, 6, 2, 5, 1, 0, 2, 1, 7, 3], float)
    return codes, y, X, offset


def _rows(y, w, offset, X, Z, codes):
    rows, _ = group_rows(y, w, offset, X, Z, codes, int(codes.max()) + 1)
    return type(rows)(*(jnp.asarray(a) for a in rows))


def _binomial_logp(eta, successes, trials, link):
    mu = {"logit": special.expit, "probit": special.ndtr}[link](eta)
    return stats.binom.logpmf(successes, trials, mu)


@pytest.fixture(scope="module")
def binomial_problem():
    codes, s, n, X = tiny_binomial()
    rows = _rows(s / n, n, np.zeros(codes.size), X, np.ones((codes.size, 1)), codes)
    return codes, s, n, X, rows


@pytest.mark.parametrize("link", ["logit", pytest.param("probit", marks=pytest.mark.slow)])
def test_quadrature_deviance_converges_to_brute_force_integral(binomial_problem, link):
    codes, s, n, X, rows = binomial_problem
    theta, beta = 1.3, np.array([-0.4, 0.8])
    total = 0.0
    for i in range(codes.max() + 1):
        sel = codes == i
        eta0 = X[sel] @ beta

        def integrand(u, eta0=eta0, sel=sel):
            logp = _binomial_logp(eta0 + theta * u, s[sel], n[sel], link).sum()
            return np.exp(logp + stats.norm.logpdf(u))

        value, _ = integrate.quad(integrand, -12, 12, epsabs=0, epsrel=1e-13, limit=200)
        total += -2 * np.log(value)
    fam = Binomial(link)
    dev = jax.jit(laplace.agq_deviance, static_argnums=(3, 4, 5))
    args = (jnp.array([theta]), jnp.asarray(beta), rows, fam, CovStructure(1))
    np.testing.assert_allclose(dev(*args, 25), total, rtol=1e-9)
    # one node is the Laplace approximation: far worse here
    assert abs(float(dev(*args, 1)) - total) > 1e-3


def _numpy_laplace(theta_factor, beta, codes, y, w, X, Z, offset, logp, weights_fn):
    """Σ_i f_i(û_i) + log det(I + Λ'Z_i'W_i Z_i Λ) with û_i from scipy.optimize."""
    total = 0.0
    r = Z.shape[1]
    for i in range(codes.max() + 1):
        sel = codes == i
        ZL = Z[sel] @ theta_factor
        eta0 = X[sel] @ beta + offset[sel]

        def f(u, ZL=ZL, eta0=eta0, sel=sel):
            return -2 * logp(eta0 + ZL @ u, y[sel], w[sel]).sum() + u @ u

        res = optimize.minimize(f, np.zeros(r), method="Nelder-Mead",
                                options=dict(xatol=1e-12, fatol=1e-14, maxiter=20000))  # fmt: skip
        res = optimize.minimize(f, res.x, method="BFGS", options=dict(gtol=1e-10))
        eta = eta0 + ZL @ res.x
        W = weights_fn(eta, w[sel])
        M = np.eye(r) + ZL.T @ (W[:, None] * ZL)
        total += res.fun + np.linalg.slogdet(M)[1]
    return total


def test_laplace_deviance_matches_an_independent_laplace_one_effect(binomial_problem):
    codes, s, n, X, rows = binomial_problem
    theta, beta = 0.9, np.array([0.3, -1.1])

    def logp(eta, prop, trials):
        return _binomial_logp(eta, prop * trials, trials, "logit")

    def weights(eta, trials):
        mu = special.expit(eta)
        return trials * mu * (1 - mu)

    Z, offset = np.ones((codes.size, 1)), np.zeros(codes.size)
    expected = _numpy_laplace(np.array([[theta]]), beta, codes, s / n, n, X, Z, offset, logp,
                              weights)  # fmt: skip
    got = LAPLACE(jnp.array([theta]), jnp.asarray(beta), rows, Binomial(), CovStructure(1))
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.fixture(scope="module")
def poisson_problem():
    codes, y, X, offset = tiny_poisson_slope()
    rows = _rows(y, np.ones(codes.size), offset, X, X, codes)
    return codes, y, X, offset, rows


THETA2 = np.array([0.8, -0.3, 0.5])
BETA2 = np.array([0.4, 0.2])


def test_laplace_deviance_matches_an_independent_laplace_two_effects(poisson_problem):
    codes, y, X, offset, rows = poisson_problem
    factor = np.array([[THETA2[0], 0.0], [THETA2[1], THETA2[2]]])

    def logp(eta, y, w):
        return w * stats.poisson.logpmf(y, np.exp(eta))

    def weights(eta, w):
        return w * np.exp(eta)

    expected = _numpy_laplace(factor, BETA2, codes, y, np.ones(codes.size), X, X, offset, logp,
                              weights)  # fmt: skip
    got = LAPLACE(jnp.asarray(THETA2), jnp.asarray(BETA2), rows, Poisson(), CovStructure(2))
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def _central_differences(f, x, h=1e-5):
    eye = np.eye(x.size)
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in eye])


@pytest.mark.parametrize(
    "link, n_agq", [("logit", 5), pytest.param("probit", 1, marks=pytest.mark.slow)]
)
def test_gradient_matches_finite_differences_binomial(binomial_problem, link, n_agq):
    *_, rows = binomial_problem
    fam, structure = Binomial(link), CovStructure(1)

    def value(x):
        return deviance(x, rows, fam, structure, n_agq)

    x = jnp.array([0.7, -0.2, 0.5])
    grad = jax.jit(jax.grad(value))(x)
    fd = _central_differences(lambda z: float(jax.jit(value)(jnp.asarray(z))), np.asarray(x))
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


def test_gradient_matches_finite_differences_two_effects(poisson_problem):
    *_, rows = poisson_problem
    structure = CovStructure(2)

    def value(x):
        return deviance(x, rows, Poisson(), structure, 1)

    x = jnp.concatenate([jnp.asarray(THETA2), jnp.asarray(BETA2)])
    grad = jax.jit(jax.grad(value))(x)
    fd = _central_differences(lambda z: float(jax.jit(value)(jnp.asarray(z))), np.asarray(x))
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_hessian_matches_finite_differences_of_the_gradient(poisson_problem):
    *_, rows = poisson_problem
    structure = CovStructure(2)

    def value(x):
        return deviance(x, rows, Poisson(), structure, 1)

    x = jnp.concatenate([jnp.asarray(THETA2), jnp.asarray(BETA2)])
    hess = jax.jit(jax.hessian(value))(x)
    grad = jax.jit(jax.grad(value))
    fd = np.stack(
        [
            (np.asarray(grad(x + 1e-5 * e)) - np.asarray(grad(x - 1e-5 * e))) / 2e-5
            for e in jnp.eye(x.size)
        ]
    )
    np.testing.assert_allclose(hess, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_conditional_modes_solve_the_score_equations(poisson_problem):
    """∇_u f_i(û_i) = 0 at the returned modes (to rounding)."""
    *_, rows = poisson_problem
    structure = CovStructure(2)
    theta, beta = jnp.asarray(THETA2), jnp.asarray(BETA2)
    u = laplace.conditional_modes(Poisson(), structure, theta, beta, rows)
    factor = jnp.array([[THETA2[0], 0.0], [THETA2[1], THETA2[2]]])
    score = jax.vmap(jax.grad(laplace.group_deviance), in_axes=(0, None, 0, 0, 0, 0, None))(
        u, factor, laplace.fixed_predictor(beta, rows), rows.y, rows.weights, rows.Z, Poisson()
    )
    assert float(jnp.max(jnp.abs(score))) < 1e-10
