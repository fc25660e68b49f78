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
