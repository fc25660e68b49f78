"""``fit(cov_pen=...)`` against statsmodels, and the penalty's effect on a boundary fit.

Oracles: statsmodels 0.15's own penalised fit where it converges (Dyestuff and Dyestuff2,
REML, ``PSD(1)``; ``bfgs`` with ``gtol=1e-10``), asserted to 1e-6 relative (statsmodels'
optimiser tolerance); statsmodels' analytic penalised score, which must vanish at our
estimate where statsmodels' own optimiser stalls (sleepstudy with a correlated slope);
statsmodels' ``PSD.func``/``PSD.deriv`` for the penalty and its autodiff derivative.
"""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
import statsmodels.base._penalties as sm_penalties
from conftest import load_reference
from statsmodels.regression.mixed_linear_model import MixedLMParams as SMParams

import mixedjax
from mixedjax.fit.penalties import PSD


def _dyestuff(case):
    _, data = load_reference(case)
    return data, mixedjax.MixedLM.from_formula("Yield ~ 1", data, groups="Batch")


def _statsmodels_fit(data, pen):
    model = sm.MixedLM.from_formula("Yield ~ 1", data, groups="Batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels warns about its Hessian here
        res = model.fit(cov_pen=pen, method=["bfgs"], gtol=1e-10)
    assert res.converged
    return res


@pytest.mark.parametrize("case", ["dyestuff_reml", "dyestuff2_reml"])
def test_psd_penalty_matches_statsmodels(case):
    data, model = _dyestuff(case)
    expected = _statsmodels_fit(data, sm_penalties.PSD(1.0))
    for pen in (PSD(1.0), sm_penalties.PSD(1.0)):  # ours, and statsmodels' object translated
        res = model.fit(cov_pen=pen)
        assert res.converged and res.optim.cov_pen == PSD(1.0)
        np.testing.assert_allclose(res.params, expected.params, rtol=1e-6)
        np.testing.assert_allclose(res.scale, expected.scale, rtol=1e-6)
        np.testing.assert_allclose(res.cov_re, expected.cov_re, rtol=1e-6)
    # the objective minimised is -2 llf + 2 pen(Ψ₁); llf is the unpenalised log-likelihood
    psi1 = res.cov_re_unscaled.to_numpy()
    np.testing.assert_allclose(res.optim.penalty, -np.log(np.linalg.det(psi1)), rtol=1e-12)
    np.testing.assert_allclose(res.optim.objective, -2 * res.llf + 2 * res.optim.penalty)
    params = mixedjax.MixedLMParams.from_components(cov_re=psi1)
    np.testing.assert_allclose(res.llf, model.loglike(params), rtol=1e-12)


def test_penalty_pulls_a_singular_fit_off_the_boundary():
    _, model = _dyestuff("dyestuff2_reml")
    plain = model.fit()
    assert plain.is_singular and plain.optim.boundary == (0,)
    pen = model.fit(cov_pen=PSD(1.0))
    assert not pen.is_singular and pen.optim.boundary == ()
    assert pen.theta[0] > 0.5  # statsmodels: cov_re_unscaled 0.25259 = θ²
    assert pen.llf < plain.llf  # the unpenalised optimum is on the boundary
    conv = pen.check_convergence()  # derivatives of the penalised objective
    assert conv.converged and conv.hessian_eigenvalues[0] > 0
    assert np.max(np.abs(conv.gradient)) < 1e-8
    # cov_pen=None is the unpenalised fit, unchanged
    again = model.fit(cov_pen=None)
    np.testing.assert_array_equal(again.params, plain.params)
    assert again.optim.cov_pen is None and again.optim.penalty == 0.0


@pytest.mark.slow  # a second compile of the penalised fit (q = 2): ~15 s
def test_penalised_sleepstudy_is_a_stationary_point_of_statsmodels_objective():
    _, data = load_reference("sleepstudy_reml")
    model = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", data, groups="Subject", re_formula="~Days"
    )
    res = model.fit(cov_pen=PSD(1.0))
    assert res.converged
    sm_model = sm.MixedLM.from_formula(
        "Reaction ~ Days", data, groups="Subject", re_formula="~Days"
    )
    sm_model.reml, sm_model.fe_pen, sm_model._freepat, sm_model._cov_sing = True, None, None, 0
    packed = SMParams.from_components(
        cov_re=res.cov_re_unscaled.to_numpy(), vcomp=np.zeros(0)
    ).get_packed(use_sqrt=True, has_fe=False)
    sm_model.cov_pen = sm_penalties.PSD(1.0)
    np.testing.assert_allclose(sm_model.score(packed), 0.0, atol=1e-8)
    sm_model.cov_pen = None  # the unpenalised score is far from zero there
    assert np.max(np.abs(sm_model.score(packed))) > 1.0
    np.testing.assert_allclose(res.llf, sm_model.loglike(packed), rtol=1e-12)


def test_psd_func_and_autodiff_deriv_match_statsmodels():
    A = np.array([[2.0, 0.3, 0.1], [0.3, 0.5, -0.2], [0.1, -0.2, 1.5]])
    ours, theirs = PSD(1.5), sm_penalties.PSD(1.5)
    A_inv = np.linalg.inv(A)
    np.testing.assert_allclose(ours.func(A, A_inv), theirs.func(A, A_inv), rtol=1e-13)
    np.testing.assert_allclose(ours.deriv(A, A_inv), theirs.deriv(A, A_inv), rtol=1e-12)
    assert ours.func(np.diag([1.0, 0.0, 1.0])) == np.inf
    with pytest.raises(ValueError, match="weight"):
        PSD(-1.0)
    with pytest.raises(TypeError, match="weight"):
        PSD("1")


def test_cov_pen_bad_input():
    data, model = _dyestuff("dyestuff_reml")
    with pytest.raises(TypeError, match="cov_pen must be"):
        model.fit(cov_pen=object())
    with pytest.raises(TypeError, match="cov_pen must be"):
        model.fit(cov_pen=sm_penalties.L2())
    with pytest.raises(ValueError, match="fe_pen.*fit_regularized"):
        model.fit(fe_pen=sm_penalties.L2())
    singular = mixedjax.MixedLMParams.from_components(cov_re=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="cov_pen is infinite at the start"):
        model.fit(start_params=singular, cov_pen=PSD(1.0))
    # no exog_re columns: nothing to penalise (statsmodels ignores it too)
    vc = mixedjax.MixedLM.from_formula(
        "Yield ~ 1", data.assign(ONE=1), groups="ONE", vc_formula={"Batch": "0 + C(Batch)"}
    )
    with pytest.warns(UserWarning, match="no effect"):
        res = vc.fit(cov_pen=PSD(1.0))
    np.testing.assert_allclose(res.llf, vc.fit().llf, rtol=1e-12)
