"""Wald covariance of the variance parameters from the exact autodiff Hessian.

Oracles: a central finite-difference Hessian of the same objective (steps of 0.003 standard
errors; compared on the standardised scale ``D H D`` with ``D = diag(se)``, where entries are
O(1) and the finite-difference error is about 1e-5: atol 1e-4), and the
closed-form REML information of the balanced one-way random-effects model (Dyestuff), where
the REML estimates are the ANOVA estimates and the observed information equals
``diag(a(n-1)/(2σ⁴), (a-1)/(2λ²))`` in ``(σ², λ = σ² + nσ_a²)`` (rtol 1e-6).
"""

import jax.numpy as jnp
import numpy as np
from inference_helpers import fit_reference

from mixedjax.engines import information as inference


def _fd_hessian(f, x, h):
    x = np.asarray(x, float)
    k = x.size
    H = np.zeros((k, k))
    for i in range(k):  # oracle only: loops over a handful of parameters
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            H[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4 * h[i] * h[j]
            )
    return 0.5 * (H + H.T)


def test_information_matches_finite_differences():
    _, model, res = fit_reference("sleepstudy_reml")

    def objective(phi):
        return float(
            inference.user_objective(jnp.asarray(phi), model.data, model.structure, res.reml)
        )

    info = np.asarray(
        inference.variance_information(
            jnp.asarray(res._phi), model.data, structure=model.structure, reml=True
        )
    )
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    H_fd = _fd_hessian(objective, res._phi, 3e-3 * se)
    D = np.diag(se)
    np.testing.assert_allclose(D @ (2 * info) @ D, D @ H_fd @ D, atol=1e-4)
    # cov_re_params is the inverse of the information; bse_re its diagonal's square root
    cov = res.cov_re_params.to_numpy()
    np.testing.assert_allclose(cov @ info, np.eye(len(cov)), atol=1e-8)
    np.testing.assert_allclose(res.bse_re.to_numpy(), np.sqrt(np.diag(cov))[:-1], rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    np.testing.assert_allclose(cov, cov.T, rtol=1e-10)


def test_balanced_anova_closed_form():
    _, model, res = fit_reference("dyestuff_reml")
    a, n = 6, 5
    s2 = res.scale
    lam = s2 + n * res.cov_re.to_numpy()[0, 0]
    var_s2 = 2 * s2**2 / (a * (n - 1))
    var_lam = 2 * lam**2 / (a - 1)
    expected = np.array(
        [
            [(var_lam + var_s2) / n**2, -var_s2 / n],
            [-var_s2 / n, var_s2],
        ]
    )
    np.testing.assert_allclose(res.cov_re_params.to_numpy(), expected, rtol=1e-6)
    # profile-scale covariance (statsmodels' params) follows by the delta method
    psi1 = res.params["Batch Var"]
    d_psi1 = np.array([1 / s2, -psi1 / s2])  # d(Ψ/σ²)/d(Ψ, σ²)
    np.testing.assert_allclose(res.bse["Batch Var"], np.sqrt(d_psi1 @ expected @ d_psi1), rtol=1e-6)
