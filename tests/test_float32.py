"""``fit(dtype="float32")``: the fit runs in single precision and stays close to float64.

Oracle: the float64 fit of the same model. Tolerances from the measurements in
``docs/float32.md`` (sleepstudy REML differs by ~1e-4 relative at most): 1e-3 relative for
the estimates and 1e-5 relative for -2 log L.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import mixedjax


@pytest.fixture(scope="module")
def sleep_model():
    df = mixedjax.datasets.load("sleepstudy")
    return mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", df, groups="Subject", re_formula="~Days"
    )


def test_float32_fit_close_to_float64(sleep_model):
    r64 = sleep_model.fit()
    r32 = sleep_model.fit(dtype="float32")
    assert r32.model.data.ZtZ.dtype == jnp.float32 and sleep_model.data.ZtZ.dtype == jnp.float64
    assert r32.optim.theta.dtype == np.float32  # the optimiser ran in float32
    assert r32.converged and r32.optim.gtol == 1e-5
    np.testing.assert_allclose(r32.fe_params, r64.fe_params, rtol=1e-3)
    np.testing.assert_allclose(r32.bse_fe, r64.bse_fe, rtol=1e-3)
    np.testing.assert_allclose(r32.cov_re, r64.cov_re, rtol=1e-3, atol=1e-3 * r64.scale)
    np.testing.assert_allclose(r32.scale, r64.scale, rtol=1e-3)
    np.testing.assert_allclose(r32.llf, r64.llf, rtol=1e-5)
    assert not np.allclose(r32.llf, r64.llf, rtol=1e-12, atol=0)  # really a different precision


def test_dtype_argument_errors(sleep_model):
    with pytest.raises(ValueError, match="dtype must be"):
        sleep_model.fit(dtype="float16")


def test_float32_resolution_check_separates_optimum_from_other_points(sleep_model):
    """The float32 convergence check (an exact float64 Newton step would gain less than
    float32 resolves) passes at the float64 optimum and fails at the start values and at a
    point 1% off the optimum, so it cannot pass a fit that stopped early."""
    from mixedjax.fit.estimation import default_start
    from mixedjax.fit.precision import FLOAT32_RESOLUTION, _newton_decrease

    r64 = sleep_model.fit()
    data, structure = sleep_model.data, sleep_model.structure
    free = jnp.ones(structure.n_theta, bool)

    def gain(theta):
        return float(_newton_decrease(jnp.asarray(theta, jnp.float64), free, data,
                                      structure=structure, reml=True))  # fmt: skip

    limit = FLOAT32_RESOLUTION * abs(r64.optim.objective)
    assert gain(r64.theta) < 1e-12 * abs(r64.optim.objective)
    assert gain(default_start(data, structure)) > 100 * limit
    assert gain(r64.theta * 1.01) > limit
