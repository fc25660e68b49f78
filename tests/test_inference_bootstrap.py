"""Parametric bootstrap and convergence diagnostics.

Oracles: each vmapped refit equals an ordinary ``MixedLM.fit`` of the same simulated
response (fixed effects to 1e-6 relative, variance parameters to 1e-4 relative: both are
converged to gtol 1e-9); the bootstrap replicates are the simulate() draws of the same seed;
the Hessian eigenvalues equal those of a central finite-difference Hessian (1e-4 relative).
"""

import jax.numpy as jnp
import numpy as np
from inference_helpers import fit_reference

import mixedjax
from mixedjax.fit.estimation import deviance


def test_bootstrap_replicates_equal_ordinary_fits():
    _, model, res = fit_reference("dyestuff_reml")
    boot = res.parametric_bootstrap(8, seed=3)
    assert boot.replicates.shape == (8, 3)
    assert list(boot.replicates.columns) == ["sd_(Intercept)|Batch", "sigma", "(Intercept)"]
    assert boot.converged.all()
    ys = res.simulate(8, seed=3)
    for i in [0, 5]:
        fit = mixedjax.MixedLM(ys[i], model.exog, model.group_labels[model.group_codes]).fit()
        row = boot.replicates.iloc[i]
        np.testing.assert_allclose(row["(Intercept)"], np.asarray(fit.fe_params)[0], rtol=1e-6)
        np.testing.assert_allclose(row["sigma"], np.sqrt(fit.scale), rtol=1e-4)
        np.testing.assert_allclose(
            row["sd_(Intercept)|Batch"], np.sqrt(np.asarray(fit.cov_re)[0, 0]), rtol=1e-4, atol=1e-3
        )
    ci = boot.conf_int(0.5)
    assert np.all(ci["lower"] <= ci["upper"])
    np.testing.assert_allclose(
        ci.loc["sigma"], boot.replicates["sigma"].quantile([0.25, 0.75]), rtol=1e-12
    )
    np.testing.assert_allclose(boot.estimate["sigma"], np.sqrt(res.scale), rtol=1e-12)


def test_check_convergence():
    _, model, res = fit_reference("sleepstudy_reml")
    diag = res.check_convergence()
    assert diag.positive_definite and diag.converged
    assert np.max(np.abs(diag.relative_gradient)) < 1e-6

    def d(t):
        return float(deviance(jnp.asarray(t), model.data, structure=model.structure, reml=True))

    theta, k, h = res.theta, res.theta.size, 1e-4
    H = np.zeros((k, k))
    for i in range(k):  # oracle only
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = (
                d(theta + ei + ej) - d(theta + ei - ej) - d(theta - ei + ej) + d(theta - ei - ej)
            ) / (4 * h * h)
    np.testing.assert_allclose(diag.hessian_eigenvalues, np.linalg.eigvalsh(H), rtol=1e-4)
    # dyestuff2 is singular: the boundary coordinate is excluded
    _, _, sing = fit_reference("dyestuff2_reml")
    assert sing.check_convergence().hessian_eigenvalues.size == 0
