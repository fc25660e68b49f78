"""Likelihood-ratio tests against lme4's ``anova`` (R 4.2, lme4 1.1-31, on the reference
data: ``anova(m2, m1)`` and ``anova(m2, m1, refit = FALSE)`` with m1 = sleepstudy,
m2 = sleepstudy_uncorrelated). Tolerance 1e-6 relative on AIC/BIC/logLik, 1e-4 on Chisq
(a difference of two nearly equal log-likelihoods) and p."""

import numpy as np
import pytest
from inference_helpers import fit_reference

import mixedjax

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def test_lrt_refits_reml_by_ml():
    _, _, m1 = fit_reference("sleepstudy_reml")
    _, _, m2 = fit_reference("sleepstudy_uncorrelated_reml")
    with pytest.warns(UserWarning, match="refitting model"):
        table = mixedjax.lrt(m1, m2, names=["m1", "m2"])
    assert list(table.columns) == COLUMNS
    assert list(table.index) == ["m2", "m1"]  # sorted by npar
    np.testing.assert_array_equal(table["npar"], [5, 6])
    np.testing.assert_allclose(table["AIC"], [1762.00325514, 1763.93934446], rtol=1e-6)
    np.testing.assert_allclose(table["BIC"], [1777.96803939, 1783.09708557], rtol=1e-6)
    np.testing.assert_allclose(table["logLik"], [-876.001627570, -875.969672232], rtol=1e-6)
    np.testing.assert_allclose(table["Chisq"].iloc[1], 0.0639106766828, rtol=1e-4)
    np.testing.assert_allclose(table["Pr(>Chisq)"].iloc[1], 0.800418431981, rtol=1e-4)
    assert table["Df"].iloc[1] == 1 and np.isnan(table["Chisq"].iloc[0])


@pytest.mark.slow
def test_lrt_without_refit_and_errors():
    _, _, m1 = fit_reference("sleepstudy_reml")
    _, _, m2 = fit_reference("sleepstudy_uncorrelated_reml")
    table = mixedjax.anova(m2, m1, refit=False)
    np.testing.assert_allclose(table["AIC"], [1753.66929358, 1755.62827196], rtol=1e-6)
    np.testing.assert_allclose(table["Chisq"].iloc[1], 0.0410216228211, rtol=1e-4)
    np.testing.assert_allclose(table["Pr(>Chisq)"].iloc[1], 0.839496190165, rtol=1e-4)
    _, _, dye = fit_reference("dyestuff_reml")
    with pytest.raises(ValueError, match="different response"):
        mixedjax.lrt(m1, dye)
    with pytest.raises(ValueError, match="at least two"):
        mixedjax.lrt(m1)
    with pytest.raises(TypeError, match="not a fitted mixed model"):
        mixedjax.lrt(m1, "m2")
