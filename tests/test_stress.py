"""Numerical stress: each case fits to reference accuracy, never NaN, never a silent error.

Oracles: lme4's sleepstudy fits (tests/reference) mapped through the exact transformation
of the data; the closed-form balanced one-way ANOVA estimates; dense (or per-group dense)
multivariate-normal densities in numpy. Tolerances are the core's reference tolerances
(fixed effects within 1e-3 SE, variances and θ within 1e-3 / 2e-3 relative) unless stated.
"""

import warnings

import numpy as np
import pytest
from conftest import load_reference
from dense_oracle import dense_loglike_user, simulate

import mixedjax


def _fit(model, reml, **kwargs):
    """Fit with every mixedjax warning turned into an error: a clean fit must be silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(reml=reml, **kwargs)
    assert res.converged
    for value in (res.llf, res.scale, *res.fe_params, *res.theta, *res.bse_fe):
        assert np.isfinite(value)
    return res


# --------------------------------------------------------------- scaled / offset sleepstudy
TRANSFORMS = {  # (a, b, c, d): y -> a y + b, Days -> c Days + d
    "y*1e-8": (1e-8, 0.0, 1.0, 0.0),
    "y*1e8": (1e8, 0.0, 1.0, 0.0),
    "y+1e6": (1.0, 1e6, 1.0, 0.0),
    "x*1e-8": (1.0, 0.0, 1e-8, 0.0),
    "x*1e8": (1.0, 0.0, 1e8, 0.0),
    "x+1e6": (1.0, 0.0, 1.0, 1e6),
    # All at once; the offset is kept at 1e5 times the scaled response's size, because
    # 1e-8·y + 1e6 would hold only ~4 significant digits of y in float64 (data, not fit).
    "all": (1e-8, 0.3, 1e8, 1e6),
}


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_sleepstudy_scaled_and_offset_matches_lme4(name, reml):
    """Fit ``a·Reaction + b ~ (c·Days + d) + (c·Days + d | Subject)`` and map back with
    ``T = [[1, d], [0, c]]``: ``β = T β'/a`` (minus ``b`` on the intercept), ``Ψ = TΨ'Tᵀ/a²``,
    ``σ² = σ²'/a²``, ``-2ℓ = -2ℓ' - 2m log|a| - [REML] 2 log|c|``; compare with lme4."""
    a, b, c, d = TRANSFORMS[name]
    ref, data = load_reference(f"sleepstudy_{'reml' if reml else 'ml'}")
    y = a * data["Reaction"].to_numpy() + b
    x = c * data["Days"].to_numpy(dtype=float) + d
    X = np.column_stack([np.ones(y.size), x])
    res = _fit(mixedjax.MixedLM(y, X, data["Subject"].to_numpy(), exog_re=X), reml)

    T = np.array([[1.0, d], [0.0, c]])
    n, p = X.shape
    m = n - p if reml else n
    objective = -2 * res.llf - 2 * m * np.log(abs(a)) - (2 * np.log(abs(c)) if reml else 0.0)
    assert objective <= ref["objective"] * (1 + 1e-6)
    np.testing.assert_allclose(objective, ref["objective"], rtol=1e-7)
    beta = (T @ np.asarray(res.fe_params) - np.array([b, 0.0])) / a
    se = np.asarray(ref["fixed"]["se"])
    assert np.all(np.abs(beta - ref["fixed"]["estimate"]) <= 1e-3 * se)
    cov_fe = T @ np.asarray(res.cov_params())[:2, :2] @ T.T / a**2
    np.testing.assert_allclose(cov_fe, ref["fixed"]["cov"], rtol=2e-3)
    scale = res.scale / a**2
    np.testing.assert_allclose(scale, ref["residual_variance"], rtol=1e-3)
    cov_re = T @ np.asarray(res.cov_re) @ T.T / a**2
    np.testing.assert_allclose(cov_re, ref["random"][0]["cov"], rtol=1e-3)
    blups = np.array([T @ res.random_effects[g].to_numpy() / a for g in res.random_effects])
    lme4 = np.asarray(ref["ranef"][0]["value"]).reshape(2, -1).T
    np.testing.assert_allclose(blups, lme4, rtol=1e-3, atol=1e-5 * ref["residual_variance"])
    assert np.all(np.isfinite(res.bse))
    # θ as lme4 reports it for these data: the lower Cholesky factor of Ψ'/σ²'.
    L = np.zeros((2, 2))
    L[[0, 1, 1], [0, 0, 1]] = res.theta
    assert np.all(np.diag(L) >= 0)
    np.testing.assert_allclose(L @ L.T, np.asarray(res.cov_re) / res.scale, rtol=1e-9)
    if c == 1.0 and d == 0.0:
        np.testing.assert_allclose(res.theta, ref["theta"], rtol=2e-3)


# --------------------------------------------------------------- near-collinear covariates
@pytest.mark.parametrize("eps", [1e-4, 1e-6, 1e-8])
def test_near_collinear_covariates(eps):
    rng = np.random.default_rng(7)
    y, X, codes = simulate(rng, [8] * 6, np.diag([1.0, 0.3]), np.array([1.0, 2.0]))
    X3 = np.column_stack([X, X[:, 1] + eps * rng.normal(size=y.size)])
    res = _fit(mixedjax.MixedLM(y, X3, codes, exog_re=X), False)
    dense = dense_loglike_user(
        y, X3, X, codes, 6, np.asarray(res.fe_params), np.asarray(res.cov_re), res.scale, False
    )
    np.testing.assert_allclose(res.llf, dense, rtol=1e-10)
    smaller = _fit(mixedjax.MixedLM(y, X, codes, exog_re=X), False)
    assert res.llf >= smaller.llf - 1e-10 * abs(smaller.llf)


def test_exactly_collinear_covariate_is_refused_by_name():
    rng = np.random.default_rng(7)
    y, X, codes = simulate(rng, [8] * 6, np.diag([1.0, 0.3]), np.array([1.0, 2.0]))
    X3 = np.column_stack([X, 3.0 * X[:, 1] - 2.0])
    with pytest.raises(ValueError, match=r"rank deficient.*'x2'"):
        mixedjax.MixedLM(y, X3, codes, exog_re=X)


# --------------------------------------------------------------- variances at / near zero
def _anova_data(ratio, m=4, g=6, seed=3):
    """Balanced data whose REML τ² is exactly ``ratio · MSW`` (negative: boundary)."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(g), m)
    e = rng.normal(size=(g, m))
    e -= e.mean(1, keepdims=True)
    msw = np.sum(e**2) / (g * (m - 1))
    a = rng.normal(size=g)
    a -= a.mean()
    msb = msw * (1 + m * ratio)
    a *= np.sqrt(msb * (g - 1) / (m * np.sum(a**2)))
    return 10.0 + (a[:, None] + e).ravel(), codes, msw


@pytest.mark.parametrize("ratio", [-0.2, 0.0, 1e-8, 1e-4, 1e-2])
def test_random_effect_variance_at_and_near_zero(ratio):
    y, codes, msw = _anova_data(ratio)
    res = _fit(mixedjax.MixedLM(y, np.ones((y.size, 1)), codes), True)
    tau2 = max(ratio, 0.0) * msw
    np.testing.assert_allclose(np.asarray(res.cov_re)[0, 0], tau2, rtol=1e-6, atol=1e-6 * msw)
    if ratio <= 0:
        assert np.asarray(res.cov_re)[0, 0] == 0.0 and res.is_singular
        sst = np.sum((y - y.mean()) ** 2)
        np.testing.assert_allclose(res.scale, sst / (y.size - 1), rtol=1e-9)
    else:
        np.testing.assert_allclose(res.scale, msw, rtol=1e-6)


# --------------------------------------------------------------- correlations near ±1
@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("rho", [0.999999, 1.0, -1.0])
def test_correlation_near_plus_minus_one(rho, reml):
    C = np.array([[1.0, 0.5 * rho], [0.5 * rho, 0.25]])
    y, X, codes = simulate(np.random.default_rng(3), [20] * 6, C, np.array([1.0, 2.0]))
    model = mixedjax.MixedLM(y, X, codes, exog_re=X)
    res = _fit(model, reml)
    dense = dense_loglike_user(
        y, X, X, codes, 6, np.asarray(res.fe_params), np.asarray(res.cov_re), res.scale, reml
    )
    np.testing.assert_allclose(res.llf, dense, rtol=1e-10)
    for seed in range(3):  # the same optimum from other starts
        t = np.random.default_rng(seed).normal(size=3)
        L = np.array([[abs(t[0]), 0.0], [t[1], abs(t[2])]])
        start = mixedjax.MixedLMParams.from_components(cov_re=L @ L.T)
        other = _fit(model, reml, start_params=start)
        np.testing.assert_allclose(other.llf, res.llf, rtol=1e-10)
        np.testing.assert_allclose(
            np.asarray(other.cov_re), np.asarray(res.cov_re), rtol=1e-5, atol=1e-8 * res.scale
        )


# --------------------------------------------------------------- unbalanced group sizes
def _blockwise_ml_loglike(y, X, Z, codes, beta, cov_re, scale):
    """ML log-density summed over groups with ``V_i⁻¹ = (I - Z_i(σ²I + ΨZ_i'Z_i)⁻¹ΨZ_i')/σ²``
    (row-level numpy; valid for singular Ψ)."""
    total = 0.0
    q = Z.shape[1]
    for g in np.unique(codes):  # the oracle may loop; the library may not
        rows = codes == g
        Zi, ri = Z[rows], y[rows] - X[rows] @ beta
        ZtZ, Ztr = Zi.T @ Zi, Zi.T @ ri
        inner = scale * np.eye(q) + cov_re @ ZtZ
        _, logdet = np.linalg.slogdet(np.eye(q) + cov_re @ ZtZ / scale)
        quad = (ri @ ri - Ztr @ np.linalg.solve(inner, cov_re @ Ztr)) / scale
        n_i = rows.sum()
        total += -0.5 * (n_i * np.log(2 * np.pi * scale) + logdet + quad)
    return total


def test_singleton_groups_mixed_with_groups_of_10000_rows():
    sizes = [1, 1, 1, 1, 1, 10_000, 10_000]
    rng = np.random.default_rng(11)
    y, X, codes = simulate(rng, sizes, np.array([[1.0, 0.2], [0.2, 0.5]]), np.array([1.0, 2.0]))
    res = _fit(mixedjax.MixedLM(y, X, codes, exog_re=X), False)
    beta, cov_re = np.asarray(res.fe_params), np.asarray(res.cov_re)
    oracle = _blockwise_ml_loglike(y, X, X, codes, beta, cov_re, res.scale)
    np.testing.assert_allclose(res.llf, oracle, rtol=1e-10)
    # A maximum: no perturbation of the parameters raises the oracle's log-likelihood.
    for k, (i, j) in enumerate([(0, 0), (1, 0), (1, 1)]):
        for h in (1e-4, -1e-4):
            E = np.zeros((2, 2))
            E[i, j] = E[j, i] = h * max(1.0, abs(cov_re[i, j]))
            trial = cov_re + E
            if np.linalg.eigvalsh(trial).min() < 0:
                continue
            assert _blockwise_ml_loglike(y, X, X, codes, beta, trial, res.scale) <= oracle, k
    for h in (1e-4, -1e-4):
        assert _blockwise_ml_loglike(y, X, X, codes, beta, cov_re, res.scale * (1 + h)) <= oracle


# --------------------------------------------------------------- many groups
def _balanced_many_groups(g, m, tau, seed):
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(g), m)
    y = 3.0 + tau * rng.normal(size=g)[codes] + rng.normal(size=g * m)
    means = np.bincount(codes, weights=y) / m
    msb = m * np.sum((means - y.mean()) ** 2) / (g - 1)
    msw = np.sum((y - means[codes]) ** 2) / (g * (m - 1))
    return y, codes, (msb - msw) / m, msw


def _check_many_groups(g, m):
    y, codes, tau2, msw = _balanced_many_groups(g, m, 0.7, seed=5)
    res = _fit(mixedjax.MixedLM(y, np.ones((y.size, 1)), codes), True)
    assert res.model.n_groups == g
    np.testing.assert_allclose(np.asarray(res.cov_re)[0, 0], tau2, rtol=1e-6)
    np.testing.assert_allclose(res.scale, msw, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.fe_params)[0], y.mean(), rtol=1e-10)


def test_twenty_thousand_groups_match_anova():
    _check_many_groups(20_000, 3)


@pytest.mark.slow
def test_one_million_groups_match_anova():
    _check_many_groups(1_000_000, 2)
