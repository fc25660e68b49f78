"""The crossed engine against a dense multivariate-normal oracle.

For a small crossed design with correlated slopes on two factors (``q = 2``) and an
intercept on a third, the blocked-Cholesky deviance, its autodiff gradient, β̂, σ²,
vcov(β̂), BLUPs and conditional SDs are compared with dense ``n x n`` formulas:
``V₁ = I + Z Λ Λ' Z'``, ``d = log|V₁| [+ log|X'V₁⁻¹X|] + m(1 + log(2π pwrss / m))``,
``b = ΛΛ'Z'V₁⁻¹(y - Xβ̂)``, ``cov(b | y) = σ²(G₁ - G₁Z'V₁⁻¹ZG₁)``. Tolerances 1e-9 relative
(float64 round-off of two different factorisations); gradient against central finite
differences at 1e-5 relative.
"""

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.design import crossed as crossed_data
from mixedjax.engines import crossed
from mixedjax.fit.crossed import deviance_at, estimates_at


def _build():
    rng = np.random.default_rng(3)
    n = 90
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "f1": rng.integers(0, 10, n).astype(str),
            "f2": np.char.add("b", rng.integers(0, 6, n).astype(str)),
            "f3": np.char.add("c", rng.integers(0, 3, n).astype(str)),
        }
    )
    df["y"] = 1 + df.x + rng.normal(size=n) + rng.normal(size=10)[df.f1.astype(int)]
    m = mixedjax.mixedlm("y ~ x + z + (x | f1) + (1 + x | f2) + (1 | f3)", df)
    assert m.engine == "crossed"
    return m


@pytest.fixture(scope="module")
def model():
    """Default paths: both dense terms are small (dense ``Z_1'Z_k`` copies)."""
    m = _build()
    assert m.structure.small == (True, True)
    return m


@pytest.fixture(scope="module", params=["small-terms", "pair-products"])
def any_path(request, model):
    """The model through each Schur-product path (pair products forced by a zero limit)."""
    if request.param == "small-terms":
        return model
    limit = crossed_data.SMALL_TERM
    crossed_data.SMALL_TERM = 0
    try:
        m = _build()
    finally:
        crossed_data.SMALL_TERM = limit
    assert m.structure.small == (False, False)
    return m


def _dense(model, theta):
    """Z (n, Σ n_k q_k) and Λ for the model's terms, θ in its layout."""
    blocks, lambdas = [], []
    start = 0
    for t in model.terms:
        q = t.q
        Z = np.zeros((model.nobs, t.n_levels * q))
        for c in range(q):
            Z[np.arange(model.nobs), t.codes * q + c] = t.design[:, c]
        k = q * (q + 1) // 2
        T = np.zeros((q, q))
        upper_rows, upper_cols = np.triu_indices(q)
        T[upper_cols, upper_rows] = theta[start : start + k]
        start += k
        blocks.append(Z)
        lambdas.append(np.kron(np.eye(t.n_levels), T))
    Z = np.hstack(blocks)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    o = 0
    for L in lambdas:
        Lam[o : o + L.shape[0], o : o + L.shape[0]] = L
        o += L.shape[0]
    return Z, Lam


def _oracle(model, theta, reml):
    X, y, n = model.exog, model.endog, model.nobs
    p = X.shape[1]
    Z, Lam = _dense(model, theta)
    G1 = Lam @ Lam.T
    V1 = np.eye(n) + Z @ G1 @ Z.T
    Vi = np.linalg.inv(V1)
    XVX = X.T @ Vi @ X
    beta = np.linalg.solve(XVX, X.T @ Vi @ y)
    r = y - X @ beta
    pwrss = r @ Vi @ r
    m = n - p if reml else n
    dev = np.linalg.slogdet(V1)[1] + m * (1 + np.log(2 * np.pi * pwrss / m))
    if reml:
        dev += np.linalg.slogdet(XVX)[1]
    scale = pwrss / m
    blups = G1 @ Z.T @ Vi @ r
    cond = scale * (G1 - G1 @ Z.T @ Vi @ Z @ G1)
    return dev, beta, scale, scale * np.linalg.inv(XVX), blups, np.sqrt(np.diag(cond))


THETA = np.array([0.8, 0.3, 0.6, 1.1, -0.4, 0.5, 0.7])


@pytest.mark.parametrize("reml", [True, False])
def test_deviance_matches_dense_oracle(any_path, reml):
    m = any_path
    dev = float(deviance_at(THETA, m.data, structure=m.structure, reml=reml))
    np.testing.assert_allclose(dev, _oracle(m, THETA, reml)[0], rtol=1e-10)


def test_gradient_matches_finite_differences(any_path):
    import jax

    m = any_path
    grad = jax.jit(jax.grad(crossed.deviance), static_argnums=(2, 3))(
        THETA, m.data, m.structure, True
    )
    h = 1e-6
    fd = [
        (m.deviance(THETA + h * e) - m.deviance(THETA - h * e)) / (2 * h)
        for e in np.eye(THETA.size)
    ]
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-5, atol=1e-6)


def test_estimates_match_dense_oracle(any_path):
    m = any_path
    est = estimates_at(THETA, m.data, structure=m.structure, reml=True)
    _, beta, scale, cov_beta, blups, cond_sd = _oracle(m, THETA, True)
    np.testing.assert_allclose(np.asarray(est.beta), beta, rtol=1e-9)
    np.testing.assert_allclose(float(est.scale), scale, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(est.cov_beta), cov_beta, rtol=1e-9)
    ours = np.concatenate([np.asarray(b).ravel() for b in est.blups])
    np.testing.assert_allclose(ours, blups, rtol=1e-8, atol=1e-12)
    sds = np.concatenate(
        [np.sqrt(np.diagonal(np.asarray(c), axis1=1, axis2=2)).ravel() for c in est.cond_cov]
    )
    np.testing.assert_allclose(sds, cond_sd, rtol=1e-8)


def test_fit_results_interface(model):
    res = model.fit()
    assert res.converged
    np.testing.assert_allclose(-2 * res.llf, model.deviance(res.theta), rtol=1e-12)
    # the optimum: no direction lowers the deviance
    for e in np.eye(res.theta.size):
        assert model.deviance(res.theta + 1e-4 * e) >= -2 * res.llf - 1e-9
    vc = res.varcorr()
    assert list(vc["group"]) == ["f1", "f1", "f1", "f2", "f2", "f2", "f3", "Residual"]
    frame = res.ranef()
    assert set(frame["grpvar"]) == {"f1", "f2", "f3"}
    assert len(frame) == 2 * 10 + 2 * 6 + 3
    assert set(res.random_effects) == {"f1", "f2", "f3"}
    text = str(res.summary())
    for name in ("f1", "f2", "f3", "Residual", "Intercept"):
        assert name in text
    np.testing.assert_allclose(res.resid + res.fittedvalues, model.endog, rtol=1e-12)


@pytest.mark.slow
def test_nested_model_through_crossed_engine_matches_core():
    """pastes (batch/cask) through the crossed engine equals the core's per-group fit."""
    from conftest import load_reference

    from mixedjax.model.lme4 import lme4_design

    ref, data = load_reference("pastes_reml")
    endog, exog, terms, _ = lme4_design(ref["lme4_formula"], data)
    model = mixedjax.MixedLM.from_terms(
        endog.to_numpy(), exog.to_numpy(), terms, list(exog.columns)
    )
    res = model.fit()
    assert -2 * res.llf <= ref["objective"] * (1 + 1e-9)
    np.testing.assert_allclose(res.theta, ref["theta"], rtol=1e-4)
