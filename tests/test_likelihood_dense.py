"""The likelihood kernels against a dense multivariate-normal oracle and finite differences.

Oracle: V = sigma^2 (I + Z G1 Z') built row by row with numpy for all observations;
ML:   -2 log L   = n log 2pi + log|V| + r'V^-1 r,                r = y - X beta
REML: -2 log L_R = (n-p) log 2pi + log|V| + log|X'V^-1 X| + r'V^-1 r at the GLS beta.
Tolerances: 1e-10 relative for the log-likelihood; 1e-6 relative for finite differences
(central differences, step 1e-5).
"""

import numpy as np
import pytest

import mixedjax
from mixedjax.core.covariance import MixedLMParams


def _problem(seed: int, n_groups: int = 7, k_re: int = 2):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, size=n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    rng.shuffle(groups)
    n = groups.size
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    Z = np.column_stack([np.ones(n), x])[:, :k_re]
    cask = rng.integers(0, 3, size=n)  # a variance component nested in groups
    vc = {"cask": {g: np.eye(3)[cask[groups == g]] for g in range(n_groups)}}
    y = X @ [1.0, -0.5, 0.3] + rng.normal(size=n) * 2 + rng.normal(size=n_groups)[groups]
    return y, X, Z, groups, vc, cask


def _dense_G_blocks(model, cov_re, vcomp, groups, cask):
    """Full V1 = I + Z G1 Z' over all rows (dense oracle)."""
    n = len(groups)
    same = groups[:, None] == groups[None, :]
    Z = model.exog_re
    V1 = np.eye(n) + same * (Z @ cov_re @ Z.T)
    same_cask = same & (cask[:, None] == cask[None, :])
    V1 += same_cask * vcomp[0]
    return V1


def _dense_objective(y, X, V, reml, beta=None):
    n, p = X.shape
    Vinv = np.linalg.inv(V)
    XtVX = X.T @ Vinv @ X
    if beta is None:
        beta = np.linalg.solve(XtVX, X.T @ Vinv @ y)
    r = y - X @ beta
    value = np.linalg.slogdet(V)[1] + r @ Vinv @ r
    if reml:
        return value + (n - p) * np.log(2 * np.pi) + np.linalg.slogdet(XtVX)[1]
    return value + n * np.log(2 * np.pi)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("reml", [True, False])
def test_loglike_equals_dense_mvn(seed, reml):
    y, X, Z, groups, vc, cask = _problem(seed)
    model = mixedjax.MixedLM(y, X, groups, exog_re=Z, exog_vc=vc)
    rng = np.random.default_rng(100 + seed)
    A = rng.normal(size=(2, 2))
    cov_re = A @ A.T + 0.1 * np.eye(2)
    vcomp = np.array([0.7])
    params = MixedLMParams.from_components(cov_re=cov_re, vcomp=vcomp)
    V1 = _dense_G_blocks(model, cov_re, vcomp, groups, cask)
    # sigma^2 profiled: maximise over scale analytically in the oracle
    n, p = X.shape
    dof = n - p if reml else n
    Vinv = np.linalg.inv(V1)
    beta = np.linalg.solve(X.T @ Vinv @ X, X.T @ Vinv @ y)
    r = y - X @ beta
    scale = (r @ Vinv @ r) / dof
    expected = -0.5 * _dense_objective(y, X, scale * V1, reml)
    actual = model.loglike(params, reml=reml)
    np.testing.assert_allclose(actual, expected, rtol=1e-10)

    # fixed beta (profile_fe=False), scale still profiled
    beta_fixed = np.array([0.5, 0.1, -0.2])
    r = y - X @ beta_fixed
    scale = (r @ Vinv @ r) / dof
    expected = -0.5 * _dense_objective(y, X, scale * V1, reml, beta=beta_fixed)
    params_fe = MixedLMParams.from_components(beta_fixed, cov_re=cov_re, vcomp=vcomp)
    np.testing.assert_allclose(
        model.loglike(params_fe, profile_fe=False, reml=reml), expected, rtol=1e-10
    )


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_fit_llf_equals_dense_mvn_at_estimate():
    y, X, Z, groups, vc, cask = _problem(5, n_groups=9)
    model = mixedjax.MixedLM(y, X, groups, exog_re=Z, exog_vc=vc)
    for reml in (True, False):
        res = model.fit(reml=reml)
        V = res.scale * _dense_G_blocks(
            model, np.asarray(res.cov_re_unscaled), res.vcomp / res.scale, groups, cask
        )
        expected = -0.5 * _dense_objective(y, X, V, reml)
        np.testing.assert_allclose(res.llf, expected, rtol=1e-10)
        # beta is the GLS estimate under the fitted V
        Vinv = np.linalg.inv(V)
        beta = np.linalg.solve(X.T @ Vinv @ X, X.T @ Vinv @ y)
        np.testing.assert_allclose(np.asarray(res.fe_params), beta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            np.asarray(res.cov_params())[:3, :3], np.linalg.inv(X.T @ Vinv @ X), rtol=1e-9
        )


def _central_diff(f, x, h=1e-5):
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h * max(1.0, abs(x[j]))
        out[j] = (f(x + e) - f(x - e)) / (2 * e[j])
    return out


@pytest.mark.parametrize("use_sqrt", [True, False])
def test_score_matches_finite_differences(use_sqrt):
    y, X, Z, groups, vc, _ = _problem(3)
    model = mixedjax.MixedLM(y, X, groups, exog_re=Z, exog_vc=vc, use_sqrt=use_sqrt)
    start = MixedLMParams.from_components(
        np.array([0.9, -0.4, 0.2]), cov_re=np.array([[1.2, 0.3], [0.3, 0.5]]), vcomp=[0.4]
    )
    for profile_fe in (True, False):
        packed = start.get_packed(use_sqrt=use_sqrt, has_fe=not profile_fe)
        score = model.score(packed, profile_fe=profile_fe)
        fd = _central_diff(lambda v, pf=profile_fe: model.loglike(v, profile_fe=pf), packed)
        np.testing.assert_allclose(score, fd, rtol=1e-6, atol=1e-8)


def test_hessian_matches_finite_differences():
    y, X, Z, groups, vc, _ = _problem(4)
    model = mixedjax.MixedLM(y, X, groups, exog_re=Z, exog_vc=vc, use_sqrt=False)
    start = MixedLMParams.from_components(
        np.array([0.9, -0.4, 0.2]), cov_re=np.array([[1.2, 0.3], [0.3, 0.5]]), vcomp=[0.4]
    )
    packed = start.get_packed(use_sqrt=False, has_fe=True)
    hess, singular = model.hessian(packed)  # statsmodels' (Hessian, singular cov_re)
    assert not singular
    fd = np.array(
        [
            _central_diff(lambda v, j=j: model.score(v, profile_fe=False)[j], packed)
            for j in range(packed.size)
        ]
    )
    np.testing.assert_allclose(hess, fd, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-12, atol=1e-12)
