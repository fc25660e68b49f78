"""One model type over one engine protocol (issue "One model, one result").

Oracle: sleepstudy's ``(Days | Subject)`` is one model, whichever engine evaluates it. The
one-factor engine (per-group blocks) and the crossed engine (blocked Cholesky) share no
code below the protocol, so each protocol kernel must agree between them at arbitrary
``θ``/``γ`` (1e-10 relative): the deviance (ML and REML), the GLS system, the estimates with
BLUPs and conditional covariances, the user-scale system. The kernels compose with
``jit``/``vmap``/``grad`` (vmapped = looped to 1e-12; gradient = five-point differences
to 1e-6). Then the public side: every model kind is a ``MixedLM`` whose fit is a
``MixedLMResults`` pointing back at that model, and the crossed classes are gone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import load_reference

import mixedjax
from mixedjax.engines.protocol import CROSSED, ONE_FACTOR, engine_for
from mixedjax.spec.terms import RandomTerm

THETAS = np.array([[1.0, 0.1, 0.3], [0.5, -0.2, 0.05], [2.0, 0.0, 0.4]])


@pytest.fixture(scope="module")
def both():
    _, data = load_reference("sleepstudy_reml")
    one = mixedjax.mixedlm("Reaction ~ Days + (Days | Subject)", data)
    codes, levels = pd.factorize(data["Subject"], sort=True)
    Z = np.column_stack([np.ones(len(data)), data["Days"].to_numpy(float)])
    term = RandomTerm("Subject", ("(Intercept)", "Days"), Z, codes, np.asarray(levels).astype(str))
    crossed = mixedjax.MixedLM.from_terms(
        data["Reaction"].to_numpy(float), Z, [term], ["Intercept", "Days"], "Reaction"
    )
    assert (one.engine, crossed.engine) == ("one-factor", "crossed")
    return one, crossed


def _kernel(engine, model, name):
    return lambda *args: getattr(engine, name)(*args[:1], model.data, model.structure, *args[1:])


@pytest.mark.parametrize("reml", [True, False])
def test_deviance_and_gls_system_agree_between_engines(both, reml):
    one, crossed = both
    for theta in THETAS:
        d1 = ONE_FACTOR.deviance(jnp.asarray(theta), one.data, one.structure, reml)
        d2 = CROSSED.deviance(jnp.asarray(theta), crossed.data, crossed.structure, reml)
        np.testing.assert_allclose(float(d1), float(d2), rtol=1e-10)
        g1 = ONE_FACTOR.gls_system(jnp.asarray(theta), one.data, one.structure)
        g2 = CROSSED.gls_system(jnp.asarray(theta), crossed.data, crossed.structure)
        np.testing.assert_allclose(float(g1.logdet_V), float(g2.logdet_V), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(g1.system), np.asarray(g2.system), rtol=1e-10)


def test_estimates_agree_between_engines(both):
    one, crossed = both
    theta = jnp.asarray(THETAS[1])
    e1 = ONE_FACTOR.estimates(theta, one.data, one.structure, True)
    e2 = CROSSED.estimates(theta, crossed.data, crossed.structure, True)
    for name in ("beta", "scale", "cov_beta", "objective"):
        np.testing.assert_allclose(getattr(e1, name), getattr(e2, name), rtol=1e-10)
    g = one.n_groups  # the one-factor data are padded to a bucket of groups
    np.testing.assert_allclose(np.asarray(e1.blups)[:g], e2.blups[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(e1.cond_cov)[:g], e2.cond_cov[0], rtol=1e-9)


def test_user_scale_system_agrees_and_matches_theta(both):
    one, crossed = both
    fit = one.fit()
    assert ONE_FACTOR.n_user_params(one.structure) == CROSSED.n_user_params(crossed.structure)
    gamma = jnp.asarray(fit._phi)  # (Ψ₁₁, Ψ₂₁, Ψ₂₂, σ²): the same layout for one term
    (s1, scale1) = ONE_FACTOR.user_gls_system(gamma, one.data, one.structure)
    (s2, scale2) = CROSSED.user_gls_system(gamma, crossed.data, crossed.structure)
    np.testing.assert_allclose(float(scale1), float(scale2), rtol=1e-12)
    np.testing.assert_allclose(float(s1.logdet_V), float(s2.logdet_V), rtol=1e-10)
    at_theta = ONE_FACTOR.gls_system(jnp.asarray(fit.theta), one.data, one.structure)
    np.testing.assert_allclose(float(s1.logdet_V), float(at_theta.logdet_V), rtol=1e-8)


@pytest.mark.parametrize("engine_index", [0, 1])
def test_kernels_compose_with_jit_vmap_grad(both, engine_index):
    model = both[engine_index]
    engine = engine_for(model.structure)
    dev = jax.jit(lambda t: engine.deviance(t, model.data, model.structure, True))
    batched = jax.vmap(dev)(jnp.asarray(THETAS))
    looped = [float(dev(jnp.asarray(t))) for t in THETAS]
    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-12)
    grad = np.asarray(jax.grad(dev)(jnp.asarray(THETAS[0])))
    h = 1e-4  # five-point stencil: truncation O(h⁴), rounding ~1e-11 / h

    def at(k, step):
        return float(dev(jnp.asarray(THETAS[0] + step * np.eye(3)[k])))

    for k in range(3):
        fd = (at(k, -2 * h) - 8 * at(k, -h) + 8 * at(k, h) - at(k, 2 * h)) / (12 * h)
        np.testing.assert_allclose(grad[k], fd, rtol=1e-6, atol=1e-7)


def test_engine_for_rejects_other_structures():
    with pytest.raises(TypeError, match="CovStructure or CrossedStructure"):
        engine_for((2, 1))


def test_every_kind_is_one_model_type_with_one_results_type():
    assert "CrossedMixedLM" not in mixedjax.__all__
    assert "CrossedMixedLMResults" not in mixedjax.__all__
    pen = mixedjax.datasets.load("penicillin").assign(ONE=1)
    sleep = mixedjax.datasets.load("sleepstudy")
    n = len(pen)
    kinds = [
        (mixedjax.mixedlm("Reaction ~ Days + (Days | Subject)", sleep), "one-factor"),
        (mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", pen), "crossed"),
        (
            mixedjax.mixedlm(
                "diameter ~ 1", pen, groups="ONE",
                vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"},
            ),
            "crossed",
        ),
        (
            mixedjax.MixedLM(
                pen["diameter"], np.ones((n, 1)), np.ones(n),
                exog_vc={
                    "plate": {1: pd.get_dummies(pen["plate"]).to_numpy(float)},
                    "sample": {1: pd.get_dummies(pen["sample"]).to_numpy(float)},
                },
            ),
            "crossed",
        ),
    ]  # fmt: skip
    for model, engine in kinds:
        assert type(model) is mixedjax.MixedLM and model.engine == engine
        res = model.fit()
        assert type(res) is mixedjax.MixedLMResults and res.model is model
        np.testing.assert_allclose(model.deviance(res.theta), -2 * res.llf, rtol=1e-10)
    with pytest.raises(ValueError, match="crossed engine"):
        kinds[1][0].fit(dtype="float32")
