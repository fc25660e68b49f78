"""L1-penalised fixed effects (statsmodels' ``fit_regularized``).

Oracles: the lasso optimality (KKT) conditions of ``β'Aβ - 2c'β + Σ α|β_j|`` with ``A``,
``c`` from a dense ``V⁻¹`` (1e-6 relative to the penalty), the unpenalised fit at α = 0,
and statsmodels 0.15's ``fit_regularized`` on the same arrays (quoted; statsmodels' own
covariance fit is converged only to ~1e-5, hence rtol 1e-4).
"""

import numpy as np
import pytest
from inference_helpers import fit_reference


def _dense_A_c(model, res):
    V = res.scale * np.eye(model.nobs)
    Z, G = model.exog_re, res.cov_re.to_numpy()
    same = model.group_codes[:, None] == model.group_codes[None, :]
    V = V + same * (Z @ G @ Z.T)
    Vinv = np.linalg.inv(V)
    return model.exog.T @ Vinv @ model.exog, model.exog.T @ Vinv @ model.endog


def test_fit_regularized_kkt_and_statsmodels():
    _, model, res = fit_reference("sleepstudy_reml")
    A, c = _dense_A_c(model, res)
    zero = model.fit_regularized(alpha=0.0)
    np.testing.assert_allclose(zero.fe_params, res.fe_params, rtol=1e-10)
    expected = {1.0: [228.84318193, 9.99809517], 8.0: [70.9097215, 6.71375962]}
    for alpha, sm_values in expected.items():
        fit = model.fit_regularized(alpha=alpha)
        beta = fit.fe_params.to_numpy()
        grad = 2 * (A @ beta - c)
        nz = beta != 0
        np.testing.assert_allclose(grad[nz], -alpha * np.sign(beta[nz]), atol=1e-6 * alpha)
        assert np.all(np.abs(grad[~nz]) <= alpha * (1 + 1e-6))
        np.testing.assert_allclose(beta, sm_values, rtol=1e-4)
    # a large penalty removes every coefficient; zeroed ones have no covariance
    big = model.fit_regularized(alpha=100.0)
    np.testing.assert_array_equal(big.fe_params, [0.0, 0.0])
    assert np.all(np.isnan(big.cov_params().to_numpy()[:2, :2]))
    with pytest.raises(ValueError, match="alpha"):
        model.fit_regularized(alpha=-1.0)
    with pytest.raises(ValueError, match="l1"):
        model.fit_regularized(method="l2")
