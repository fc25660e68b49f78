"""Functional API: agreement with ``MixedLM.fit``, ``jit``/``vmap`` composition, and implicit
gradients of the fitted estimates checked against central finite differences.

The data are sleepstudy with every 7th row dropped (unbalanced, so β̂ depends on θ̂ and the
implicit part of the derivative matters). Tolerances: estimates 1e-8 relative to the
``MixedLM`` fit; gradients 1e-5 relative to central differences with step 1e-3 in ``y``
(truncation error O(h²) relative to the second derivative; the fits converge to ~1e-12).
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax import functional as F
from mixedjax.design.groups import group_crossprods


@pytest.fixture(scope="module")
def problem():
    df = mixedjax.datasets.load("sleepstudy")
    df = df[np.arange(len(df)) % 7 != 3].reset_index(drop=True)
    model = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", df, groups="Subject", re_formula="~Days"
    )
    X = jnp.asarray(model.exog)
    codes = jnp.asarray(model.group_codes)
    y = jnp.asarray(model.endog)
    fit = jax.jit(lambda y, X: F.fit(F.make_data(y, X, X, codes, 24)))
    return model, y, X, codes, fit


def test_make_data_matches_numpy_crossprods(problem):
    model, y, X, codes, _ = problem
    ours = F.make_data(y, X, X, codes, 18)
    ref = group_crossprods(model.endog, model.exog, model.exog_z, model.group_codes, 18)
    for name, a, b in zip(ours._fields, ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-9, err_msg=name)


def test_fit_matches_model_fit(problem):
    model, y, X, codes, fit = problem
    ours = fit(y, X)
    ref = model.fit()
    assert bool(ours.converged)
    np.testing.assert_allclose(ours.beta, ref.fe_params, rtol=1e-8)
    np.testing.assert_allclose(ours.theta, ref.theta, rtol=1e-8)
    np.testing.assert_allclose(ours.scale, ref.scale, rtol=1e-8)
    np.testing.assert_allclose(ours.cov_re, ref.cov_re, rtol=1e-8)
    np.testing.assert_allclose(-0.5 * ours.objective, ref.llf, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(ours.cov_beta)), ref.bse_fe, rtol=1e-8)
    data = F.make_data(y, X, X, codes, 24)
    b = F.blups(ours.theta, ours.beta, data)[:18]
    np.testing.assert_allclose(b, ref._blups, rtol=1e-7, atol=1e-9)


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_vmap_deviance_matches_loop(problem):
    _, y, X, codes, _ = problem
    data = F.make_data(y, X, X, codes, 24)
    thetas = jnp.array([[1.0, 0.0, 0.2], [0.5, 0.1, 0.3], [2.0, -0.2, 0.1]])
    batched = jax.vmap(lambda t: F.deviance(t, data, reml=False))(thetas)
    looped = [F.deviance(t, data, reml=False) for t in thetas]
    np.testing.assert_allclose(batched, looped, rtol=1e-13)


def _summary(y, X, codes):
    """Scalar that depends on every part of the fit (β̂, σ², Ψ̂ and so θ̂)."""
    f = F.fit(F.make_data(y, X, X, codes, 24))
    return f.beta[1] + 0.1 * f.beta[0] + jnp.log(f.scale) + 1e-3 * f.cov_re[0, 0] + f.theta[1]


@pytest.mark.slow  # heavy cold (>20 s on 2 cores): the default suite stays under 5 minutes
def test_implicit_gradient_matches_finite_differences(problem):
    _, y, X, codes, _ = problem
    grad = jax.jit(jax.grad(_summary, argnums=(0, 1)))
    g_y, g_X = grad(y, X, codes)
    value = jax.jit(_summary)
    h = 1e-3
    for j in [0, 11, 100]:
        e = jnp.zeros_like(y).at[j].set(h)
        fd = (value(y + e, X, codes) - value(y - e, X, codes)) / (2 * h)
        np.testing.assert_allclose(g_y[j], fd, rtol=1e-5, err_msg=f"d/dy[{j}]")
    for j in [5, 60]:
        e = jnp.zeros_like(X).at[j, 1].set(h)
        fd = (value(y, X + e, codes) - value(y, X - e, codes)) / (2 * h)
        np.testing.assert_allclose(g_X[j, 1], fd, rtol=1e-5, err_msg=f"d/dX[{j}, 1]")
    # Shifting y by a constant moves only the intercept: d(summary)/d(y·1) = 0.1.
    np.testing.assert_allclose(jnp.sum(g_y), 0.1, rtol=1e-8)


@pytest.mark.slow  # compiles a vmapped fit and its gradient (~1 min on 2 cores)
def test_vmap_of_grad_of_fit(problem):
    _, y, X, codes, _ = problem
    ys = jnp.stack([y, 0.5 * y + 3.0])
    grads = jax.vmap(jax.grad(_summary), in_axes=(0, None, None))(ys, X, codes)
    single = jax.grad(_summary)(ys[1], X, codes)
    np.testing.assert_allclose(grads[1], single, rtol=1e-9, atol=1e-12)


@pytest.mark.slow  # the worked example: ~30 s of compilation, then 40 fits + gradients
def test_differentiable_pipeline_example():
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    from differentiable_pipeline import cosine, train_feature_map

    w_true, w, losses = train_feature_map(steps=40)
    assert losses[-1] < 0.1 * losses[0]
    assert cosine(w, w_true) > 0.99


# ------------------------------------------------------------ several grouping factors
@pytest.fixture(scope="module")
def penicillin_design():
    df = mixedjax.datasets.load("penicillin")
    ones = np.ones((len(df), 1))
    codes = [pd.factorize(df[c], sort=True)[0] for c in ("plate", "sample")]
    design = F.crossed_design(ones, [(ones, codes[0]), (ones, codes[1])])
    return df, design


def test_crossed_fit_equals_the_model_fit(penicillin_design):
    df, design = penicillin_design
    y = df["diameter"].to_numpy(float)
    fitted = jax.jit(lambda y: F.crossed_fit(F.crossed_data(y, design), design.structure))(y)
    model = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df).fit()
    np.testing.assert_allclose(fitted.theta, model.theta, rtol=1e-7)
    np.testing.assert_allclose(fitted.beta, model.fe_params, rtol=1e-10)
    np.testing.assert_allclose(-0.5 * fitted.objective, model.llf, rtol=1e-12)
    assert bool(fitted.converged)


@pytest.mark.slow  # compiles vmap and grad through the crossed optimiser (about a minute)
def test_crossed_fit_vmaps_and_differentiates(penicillin_design):
    """vmap over responses equals fit_many (1e-8); the implicit gradient of σ̂² with respect
    to y equals central finite differences (step 1e-4, 1e-6 relative)."""
    df, design = penicillin_design
    y = df["diameter"].to_numpy(float)
    Y = np.stack([y, y + np.linspace(-1, 1, y.size)])
    fits = jax.vmap(lambda y: F.crossed_fit(F.crossed_data(y, design), design.structure))(Y)
    model = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
    batch = model.fit_many(Y.T)
    np.testing.assert_allclose(-0.5 * fits.objective, batch.llf, rtol=1e-8)

    def scale(y):
        return F.crossed_fit(F.crossed_data(y, design), design.structure).scale

    direction = np.sin(np.arange(y.size))
    grad = jax.grad(scale)(y)
    h = 1e-4
    fd = (scale(y + h * direction) - scale(y - h * direction)) / (2 * h)
    np.testing.assert_allclose(grad @ direction, fd, rtol=1e-6)
