"""Convergence honesty: every warning mixedjax emits fires when it should, says which
criterion failed and what to try, and never fires on a clean reference fit.

Warnings emitted by mixedjax: ``ConvergenceWarning`` (maxiter, stalled line search,
non-finite objective, saddle point), the ``missing="drop"`` ``UserWarning`` and the
``use_sparse`` ``UserWarning``; a fit with non-finite estimates raises ``FloatingPointError``.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference

import mixedjax
from mixedjax import ConvergenceWarning
from mixedjax.fit import safeguards
from mixedjax.fit.optimize import STATUS_MAXITER, STATUS_NONFINITE, STATUS_STALLED
from mixedjax.results.mixedlm import OptSummary

ONE_FACTOR = ["sleepstudy", "dyestuff", "dyestuff2", "orthodont", "mathachieve"]


def _reference_model(name):
    ref, data = load_reference(name)
    sm = ref["statsmodels"]
    response, rhs = ref["lme4_formula"].split("~", 1)
    fixed = rhs.split("+ (")[0].strip()
    return ref, mixedjax.MixedLM.from_formula(
        f"{response.strip()} ~ {fixed}", data, groups=sm["groups"], re_formula=sm.get("re_formula")
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(f"{c}_{m}", marks=() if m == "reml" else (pytest.mark.slow,))
        for c in ONE_FACTOR
        for m in ("reml", "ml")
    ],
)
def test_no_warning_on_clean_reference_fits(name):
    ref, model = _reference_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning at all fails the test
        res = model.fit(reml=ref["reml"])
        str(res.summary())
        assert np.all(np.isfinite(res.bse))
    assert res.converged and res.optim.message.startswith("converged")


def _vc_reference_model(name):
    """Reference cases fitted through variance components or a ``free`` mask."""
    ref, data = load_reference(name)
    sm = ref["statsmodels"]
    response, rhs = ref["lme4_formula"].split("~", 1)
    fixed = rhs.split("+ (")[0].strip()
    formula = f"{response.strip()} ~ {fixed}"
    if name.startswith("sleepstudy_uncorrelated"):  # (1|S) + (0+Days|S): diagonal Ψ
        model = mixedjax.MixedLM.from_formula(formula, data, groups="Subject", re_formula="~Days")
        return ref, model, {"free": mixedjax.MixedLMParams.from_components(cov_re=np.eye(2))}
    if sm["groups"] == "ONE":
        data = data.assign(ONE=1)
    model = mixedjax.MixedLM.from_formula(
        formula,
        data,
        groups=sm["groups"],
        re_formula=sm.get("re_formula"),
        vc_formula=sm.get("vc_formula"),
    )
    return ref, model, {}


VC_CASES = ["pastes", "penicillin", "sleepstudy_uncorrelated"]


# slow: these six structures compile separately (~70 CPU-seconds in all, more than this
# file's whole budget); they pass with no warning (run with -m slow).
@pytest.mark.slow
@pytest.mark.parametrize("name", [f"{c}_{m}" for c in VC_CASES for m in ("reml", "ml")])
def test_no_warning_on_clean_variance_component_reference_fits(name):
    ref, model, kwargs = _vc_reference_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(reml=ref["reml"], **kwargs)
    assert res.converged
    assert -2 * res.llf <= ref["objective"] * (1 + 1e-6)
    np.testing.assert_allclose(-2 * res.llf, ref["objective"], rtol=1e-6)


def _sleepstudy():
    return _reference_model("sleepstudy_reml")[1]


def test_maxiter_warns_with_criterion_and_remedy():
    """From a far start, one quasi-Newton iteration (plus the Newton polish, which alone
    converges from the default start) cannot reach the optimum."""
    start = mixedjax.MixedLMParams.from_components(cov_re=1e4 * np.eye(2))
    with pytest.warns(ConvergenceWarning) as record:
        res = _sleepstudy().fit(maxiter=1, start_params=start)
    message = str(record[0].message)
    assert "maxiter=1" in message and "scaled gradient" in message and "gtol" in message
    assert "fit(maxiter=2)" in message
    assert not res.converged and "maxiter" in res.optim.message
    assert "Converged:" in str(res.summary()) and "No" in str(res.summary())


def test_unreachable_gtol_warns_that_the_line_search_stalled():
    with pytest.warns(ConvergenceWarning, match=r"line search could not lower.*gtol 1e-300"):
        res = _sleepstudy().fit(gtol=1e-300)
    assert not res.converged
    assert "looser gtol" in res.optim.message or "line search" in res.optim.message


def test_saddle_point_left_unescaped_is_not_called_converged(monkeypatch):
    """Balanced one-way data whose ML deviance is lower at θ=0 than at the start θ=1: the
    first L-BFGS step lands on the stationary point θ=0, a maximum of the likelihood. With
    the restarts disabled the fit must warn; with them it reaches the closed form."""
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(6), 3)
    y = 5.0 + 0.0 * rng.normal(size=6)[codes] + rng.normal(size=codes.size)
    model = mixedjax.MixedLM(y, np.ones((y.size, 1)), codes)
    monkeypatch.setattr(safeguards, "MAX_RESTARTS", 0)
    with pytest.warns(ConvergenceWarning, match=r"stationary point that is not a minimum"):
        res = model.fit(reml=False)
    assert not res.converged
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(reml=False)
    np.testing.assert_allclose(np.asarray(res.cov_re)[0, 0], 0.21194918, rtol=1e-6)


def _summary(**changes):
    base = dict(
        method="lbfgs",
        theta_start=np.ones(1),
        theta=np.ones(1),
        objective=1.0,
        n_iter=7,
        n_eval=9,
        n_newton=0,
        scaled_gradient=3e-5,
        gradient=np.ones(1),
        gtol=1e-9,
        maxiter=50,
        converged=False,
        message="",
        boundary=(),
        free_mask=np.ones(1, bool),
    )
    base.update(changes)
    return OptSummary(**base)


@pytest.mark.parametrize(
    "status, saddle, must_contain",
    [
        (STATUS_MAXITER, False, ["maxiter=50", "3.00e-05 > gtol 1e-09", "fit(maxiter=100)"]),
        (STATUS_STALLED, False, ["line search", "3.00e-05 > gtol", "method='bfgs'", "simpler"]),
        (STATUS_NONFINITE, False, ["non-finite", "exog_re", "start_params"]),
        (STATUS_MAXITER, True, ["not a minimum", "negative eigenvalue", "start_params"]),
    ],
)
def test_every_failure_names_its_criterion_and_a_remedy(status, saddle, must_contain):
    message = safeguards.convergence_diagnosis(status, _summary(), saddle)
    for part in must_contain:
        assert part in message, (part, message)


def test_non_finite_estimates_stop_with_a_named_error():
    from mixedjax.fit.estimation import Estimates

    est = Estimates(
        beta=np.array([1.0, np.nan]),
        scale=np.array(1.0),
        cov_beta=np.eye(2),
        blups=np.zeros((3, 1)),
        cond_cov=np.zeros((3, 1, 1)),
        objective=np.array(np.inf),
    )
    with pytest.raises(FloatingPointError, match=r"non-finite fe_params, objective"):
        safeguards.check_finite(np.ones(1), est)
    safeguards.check_finite(np.ones(1), est._replace(beta=np.ones(2), objective=np.array(1.0)))


def test_missing_drop_warning_fires_only_when_rows_are_dropped():
    rng = np.random.default_rng(1)
    y = rng.normal(size=12)
    groups = np.repeat([1, 2, 3], 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mixedjax.MixedLM(y, np.ones((12, 1)), groups, missing="drop")
    y[5] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 1 of 12 rows .*endog: 1"):
        mixedjax.MixedLM(y, np.ones((12, 1)), groups, missing="drop")


def test_use_sparse_warning():
    data = pd.DataFrame({"y": [1.0, 2.0, 0.5, 3.0, 2.5, 1.0], "g": [1, 1, 2, 2, 3, 3]})
    with pytest.warns(UserWarning, match=r"use_sparse is ignored"):
        mixedjax.MixedLM.from_formula("y ~ 1", data, groups="g", use_sparse=True)
