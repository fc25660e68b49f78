"""Property-based tests (hypothesis) on random small designs.

Shapes are fixed (6 groups, so the group axis is padded to the same bucket of 8; ``p`` and
``q`` fixed per test) and only the data are drawn, so JAX compiles each kernel once.
Oracles: a dense multivariate-normal log-density in numpy (:mod:`dense_oracle`), finite
differences, the closed-form one-way ANOVA estimates, and exact transformation rules.

Tolerances: log-likelihoods 1e-10 relative (same numbers by two routes); fitted quantities
1e-6 relative (two independent optimiser runs, each converged to a scaled gradient of 1e-9
and Newton-polished).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dense_oracle import dense_loglike, dense_loglike_user, simulate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixedjax
from mixedjax.core.covariance import CovStructure
from mixedjax.design.groups import group_crossprods, pad_groups
from mixedjax.engines.onefactor import profiled_deviance
from mixedjax.fit import estimation

N_GROUPS = 6
FEW = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

seeds = st.integers(0, 2**32 - 1)
sizes = st.lists(st.integers(1, 8), min_size=N_GROUPS, max_size=N_GROUPS)
fit_sizes = st.lists(st.integers(4, 10), min_size=N_GROUPS, max_size=N_GROUPS)
# Lower Cholesky factor of Ψ₁ = Ψ/σ² (θ in lme4's order: L00, L10, L11), singular allowed.
factors = st.tuples(st.floats(0.0, 2.0), st.floats(-1.5, 1.5), st.floats(0.0, 1.5))


def _psi(factor):
    L = np.array([[factor[0], 0.0], [factor[1], factor[2]]])
    return L @ L.T


def _model(y, X, codes, exog_re=None):
    return mixedjax.MixedLM(y, X, codes, exog_re=X if exog_re is None else exog_re)


def _fit(model, reml):
    res = model.fit(reml=reml)
    assert res.converged
    return res


# --------------------------------------------------------------- log-likelihood = dense MVN
@FEW
@given(seed=seeds, sizes=sizes, factor=factors, reml=st.booleans())
def test_loglike_equals_dense_mvn(seed, sizes, factor, reml):
    rng = np.random.default_rng(seed)
    y, X, codes = simulate(rng, sizes, np.diag([1.0, 0.25]), np.array([1.0, -0.5]))
    model = _model(y, X, codes)
    psi1 = _psi(factor)
    expected, _, _ = dense_loglike(y, X, X, codes, N_GROUPS, psi1, reml)

    params = mixedjax.MixedLMParams.from_components(cov_re=psi1)
    np.testing.assert_allclose(model.loglike(params, reml=reml), expected, rtol=1e-10)
    # The fit's objective (θ route, per-group Cholesky) is the same function.
    theta = jnp.asarray([factor[0], factor[1], factor[2]])
    dev = estimation.deviance(theta, model.data, structure=model.structure, reml=reml)
    np.testing.assert_allclose(-0.5 * float(dev), expected, rtol=1e-10)

    beta = rng.normal(size=2)
    expected_b, _, _ = dense_loglike(y, X, X, codes, N_GROUPS, psi1, reml, beta=beta)
    params_b = mixedjax.MixedLMParams.from_components(fe_params=beta, cov_re=psi1)
    actual_b = model.loglike(params_b, profile_fe=False, reml=reml)
    np.testing.assert_allclose(actual_b, expected_b, rtol=1e-10)


# --------------------------------------------------------------- optimality at the fit
def _fd_gradient(fun, x, h=1e-5):
    grad = np.zeros_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h * max(1.0, abs(x[j]))
        grad[j] = (fun(x + e) - fun(x - e)) / (2 * e[j])
    return grad


_grad = jax.jit(jax.grad(profiled_deviance), static_argnums=(2, 3))
_hessian = jax.jit(jax.hessian(profiled_deviance), static_argnums=(2, 3))


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
@FEW
@given(seed=seeds, sizes=fit_sizes, factor=factors, reml=st.booleans())
def test_fit_is_a_stationary_minimum(seed, sizes, factor, reml):
    rng = np.random.default_rng(seed)
    y, X, codes = simulate(rng, sizes, _psi(factor), np.array([2.0, 1.0]))
    model = _model(y, X, codes)
    res = _fit(model, reml)
    theta = np.asarray(res.theta)
    structure = model.structure

    def dev(t):
        return float(
            estimation.deviance(jnp.asarray(t), model.data, structure=structure, reml=reml)
        )

    value = dev(theta)
    scale = max(1.0, abs(value))
    grad_ad = np.asarray(_grad(jnp.asarray(theta), model.data, structure, reml))
    assert np.max(np.abs(grad_ad)) / scale < 1e-6, grad_ad
    assert np.max(np.abs(_fd_gradient(dev, theta))) / scale < 1e-6
    hess = np.asarray(_hessian(jnp.asarray(theta), model.data, structure, reml))
    eig = np.linalg.eigvalsh(0.5 * (hess + hess.T))
    assert eig.min() >= -1e-6 * max(1.0, np.abs(eig).max()), eig
    # No nearby point is better (the minimum is not a saddle the Hessian test missed).
    for _ in range(5):
        step = rng.normal(size=theta.size) * 1e-3
        assert dev(theta + step) >= value - 1e-9 * scale

    # The reported llf is the dense density at the reported (β, Ψ, σ²).
    expected = dense_loglike_user(
        y, X, X, codes, N_GROUPS, np.asarray(res.fe_params), np.asarray(res.cov_re), res.scale, reml
    )
    np.testing.assert_allclose(res.llf, expected, rtol=1e-9)


# --------------------------------------------------------------- invariances
def _compare_fits(a, b, rtol=1e-6):
    """Two fits of the same model: same estimates (variances to 1e-7 σ² absolute)."""
    s = a.scale
    np.testing.assert_allclose(b.llf, a.llf, rtol=1e-9)
    np.testing.assert_allclose(b.scale, s, rtol=rtol)
    np.testing.assert_allclose(
        np.asarray(b.fe_params), np.asarray(a.fe_params), rtol=rtol, atol=1e-7 * np.sqrt(s)
    )
    np.testing.assert_allclose(np.asarray(b.cov_re), np.asarray(a.cov_re), rtol=rtol, atol=1e-7 * s)


@FEW
@given(seed=seeds, sizes=fit_sizes, factor=factors, reml=st.booleans())
def test_invariant_to_row_order_and_group_labels(seed, sizes, factor, reml):
    rng = np.random.default_rng(seed)
    y, X, codes = simulate(rng, sizes, _psi(factor), np.array([0.5, 1.0]))
    names = np.array([f"subject-{k}" for k in rng.permutation(N_GROUPS)])
    base = _fit(_model(y, X, names[codes]), reml)

    perm = rng.permutation(y.size)
    shuffled = _fit(_model(y[perm], X[perm], names[codes][perm]), reml)
    _compare_fits(base, shuffled)
    relabel = {old: f"{k:03d}" for k, old in enumerate(rng.permutation(names))}
    renamed = _fit(_model(y, X, np.array([relabel[v] for v in names[codes]])), reml)
    _compare_fits(base, renamed)
    s = base.scale
    for label in names:
        for other, key in ((shuffled, label), (renamed, relabel[label])):
            np.testing.assert_allclose(
                other.random_effects[key].to_numpy(),
                base.random_effects[label].to_numpy(),
                rtol=1e-6,
                atol=1e-7 * np.sqrt(s),
            )
    np.testing.assert_allclose(shuffled.fittedvalues, base.fittedvalues[perm], rtol=1e-7)


@FEW
@given(seed=seeds, sizes=sizes, factor=factors, extra=st.sampled_from([0, 2, 6, 10]))
def test_padding_groups_changes_nothing(seed, sizes, factor, extra):
    rng = np.random.default_rng(seed)
    y, X, codes = simulate(rng, sizes, np.diag([1.0, 0.5]), np.array([1.0, 1.0]))
    structure = CovStructure(2)
    exact = group_crossprods(y, X, X, codes, N_GROUPS)
    padded = pad_groups(exact, 16)  # one padded shape: compiles once
    theta = jnp.asarray(factor)
    for reml in (False, True):
        d_exact = estimation.deviance(theta, exact, structure=structure, reml=reml)
        d_padded = estimation.deviance(theta, padded, structure=structure, reml=reml)
        np.testing.assert_allclose(float(d_padded), float(d_exact), rtol=1e-13)
    est = estimation.estimates_at(theta + 0.1, padded, structure=structure, reml=True)
    ref = estimation.estimates_at(theta + 0.1, exact, structure=structure, reml=True)
    np.testing.assert_allclose(est.beta, ref.beta, rtol=1e-12)
    np.testing.assert_allclose(est.blups[:N_GROUPS], ref.blups, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(est.blups[N_GROUPS:], 0.0)
    # Rows of groups appended with no data (codes never used) behave the same way.
    with_empty = group_crossprods(y, X, X, codes, 16 - extra)
    d = estimation.deviance(theta, pad_groups(with_empty, 16), structure=structure, reml=True)
    d0 = estimation.deviance(theta, padded, structure=structure, reml=True)
    np.testing.assert_allclose(float(d), float(d0), rtol=1e-13)


log_factors = st.floats(-3.0, 3.0)  # multiplier 10^u
signs = st.sampled_from([-1.0, 1.0])
shifts = st.floats(-1e3, 1e3)


@FEW
@given(
    seed=seeds,
    sizes=fit_sizes,
    factor=factors,
    reml=st.booleans(),
    ly=log_factors,
    sy=signs,
    b=shifts,
    lx=log_factors,
    sx=signs,
    d=shifts,
)
def test_affine_rescaling_transforms_estimates(seed, sizes, factor, reml, ly, sy, b, lx, sx, d):
    """``y → a y + b`` and ``x → c x + d`` (in X and Z): with ``T = [[1, d], [0, c]]``,
    ``β' = T⁻¹(aβ + b e₀)``, ``Ψ' = a² T⁻¹ΨT⁻ᵀ``, ``σ²' = a²σ²``, ``γ' = a T⁻¹γ``,
    ``ℓ' = ℓ - m log|a| - [REML] log|c|`` (``m = n`` or ``n - p``)."""
    a, c = sy * 10.0**ly, sx * 10.0**lx
    rng = np.random.default_rng(seed)
    y, X, codes = simulate(rng, sizes, _psi(factor), np.array([3.0, -1.0]))
    base = _fit(_model(y, X, codes), reml)
    X2 = np.column_stack([X[:, 0], c * X[:, 1] + d])
    moved = _fit(_model(a * y + b, X2, codes), reml)

    T = np.array([[1.0, d], [0.0, c]])
    n, p = X.shape
    m = n - p if reml else n
    expected_llf = base.llf - m * np.log(abs(a)) - (np.log(abs(c)) if reml else 0.0)
    np.testing.assert_allclose(moved.llf, expected_llf, rtol=1e-9)
    # Compare on the original scale: map the moved fit back.
    s = base.scale
    np.testing.assert_allclose(moved.scale / a**2, s, rtol=1e-6)
    beta_back = (T @ np.asarray(moved.fe_params) - np.array([b, 0.0])) / a
    se = np.asarray(base.bse_fe)
    beta = np.asarray(base.fe_params)
    assert np.all(np.abs(beta_back - beta) <= 1e-6 * np.abs(beta) + 1e-6 * se), (beta_back, beta)
    psi_back = T @ np.asarray(moved.cov_re) @ T.T / a**2
    np.testing.assert_allclose(psi_back, np.asarray(base.cov_re), rtol=1e-5, atol=1e-7 * s)
    for g in range(N_GROUPS):
        gamma_back = T @ moved.random_effects[g].to_numpy() / a
        np.testing.assert_allclose(
            gamma_back, base.random_effects[g].to_numpy(), rtol=1e-5, atol=1e-6 * np.sqrt(s)
        )


# --------------------------------------------------------------- ML vs REML, nesting
@FEW
@given(seed=seeds, sizes=fit_sizes, factor=factors)
def test_ml_and_reml_each_maximise_their_own_criterion(seed, sizes, factor):
    """ℓ_ML(θ̂_ML) ≥ ℓ_ML(θ̂_REML) and ℓ_REML(θ̂_REML) ≥ ℓ_REML(θ̂_ML)."""
    rng = np.random.default_rng(seed)
    y, X, codes = simulate(rng, sizes, _psi(factor), np.array([0.0, 2.0]))
    model = _model(y, X, codes)
    ml, reml = _fit(model, False), _fit(model, True)

    def at(res, use_reml):
        params = mixedjax.MixedLMParams.from_components(cov_re=np.asarray(res.cov_re_unscaled))
        return model.loglike(params, reml=use_reml)

    tol = 1e-10 * abs(ml.llf)
    assert ml.llf >= at(reml, False) - tol
    assert reml.llf >= at(ml, True) - tol
    np.testing.assert_allclose(at(ml, False), ml.llf, rtol=1e-10)


def _anova(y, codes, m):
    g = codes.max() + 1
    means = np.bincount(codes, weights=y) / m
    ssb = m * np.sum((means - y.mean()) ** 2)
    ssw = np.sum((y - means[codes]) ** 2)
    return ssb / (g - 1), ssw / (g * (m - 1)), ssb + ssw, g


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
@FEW
@given(seed=seeds, m=st.integers(2, 7), tau=st.floats(0.0, 2.0))
def test_balanced_one_way_anova_closed_form(seed, m, tau):
    """Balanced random intercept: REML τ² = (MSB − MSW)/m, ML τ² = ((1 − 1/g)MSB − MSW)/m,
    σ² = MSW, or τ² = 0 and σ² = SST/(n − 1) (REML), SST/n (ML) when these are negative;
    hence τ²_REML ≥ τ²_ML."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(N_GROUPS), m)
    y = 5.0 + tau * rng.normal(size=N_GROUPS)[codes] + rng.normal(size=codes.size)
    X = np.ones((codes.size, 1))
    model = mixedjax.MixedLM(y, X, codes)
    msb, msw, sst, g = _anova(y, codes, m)
    n = codes.size
    fits = {}
    for reml, between in ((True, msb), (False, (1 - 1 / g) * msb)):
        res = _fit(model, reml)
        tau2 = (between - msw) / m
        if tau2 > 1e-6 * msw:
            np.testing.assert_allclose(np.asarray(res.cov_re)[0, 0], tau2, rtol=1e-6)
            np.testing.assert_allclose(res.scale, msw, rtol=1e-7)
        elif tau2 < -1e-6 * msw:
            assert np.asarray(res.cov_re)[0, 0] == 0.0 and res.is_singular
            np.testing.assert_allclose(res.scale, sst / (n - 1 if reml else n), rtol=1e-7)
        np.testing.assert_allclose(np.asarray(res.fe_params)[0], y.mean(), rtol=1e-9)
        fits[reml] = res
    assert np.asarray(fits[True].cov_re)[0, 0] >= np.asarray(fits[False].cov_re)[0, 0] - 1e-9 * msw


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
@FEW
@given(seed=seeds, sizes=fit_sizes, factor=factors)
def test_extra_random_slope_never_lowers_ml_loglike(seed, sizes, factor):
    rng = np.random.default_rng(seed)
    y, X, codes = simulate(rng, sizes, _psi(factor), np.array([1.0, 0.0]))
    intercept = X[:, :1]
    small = _fit(_model(y, intercept, codes, exog_re=intercept), False)
    big = _fit(_model(y, intercept, codes, exog_re=X), False)
    assert big.llf >= small.llf - 1e-10 * abs(small.llf)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
