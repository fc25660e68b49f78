"""One-grouping-factor lme4 reference cases, matched at the core tolerances.

Tolerances (issue "Core"): -2 llf not worse than lme4's objective by more than 1e-6
relative; fixed effects within 1e-3 of their SE; SEs, variances and BLUPs within 1e-3
relative (absolute 1e-5 * sigma^2 at a boundary).
"""

import warnings

import numpy as np
import pytest
from conftest import load_reference

import mixedjax

CASES = ["sleepstudy", "dyestuff", "dyestuff2", "orthodont", "mathachieve"]


def _fit(name: str):
    ref, data = load_reference(name)
    sm = ref["statsmodels"]
    response, rhs = ref["lme4_formula"].split("~", 1)
    fixed = rhs.split("+ (")[0].strip()
    model = mixedjax.MixedLM.from_formula(
        f"{response.strip()} ~ {fixed}", data, groups=sm["groups"], re_formula=sm.get("re_formula")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious warnings on clean reference fits
        return ref, model, model.fit(reml=ref["reml"])


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(f"{c}_{m}", marks=() if m == "reml" else (pytest.mark.slow,))
        for c in CASES
        for m in ("reml", "ml")
    ],
)
def fitted(request):
    return _fit(request.param)


def test_objective_not_worse(fitted):
    ref, _, res = fitted
    assert -2 * res.llf <= ref["objective"] * (1 + 1e-6)
    assert res.converged


def test_fixed_effects(fitted):
    ref, _, res = fitted
    se = np.asarray(ref["fixed"]["se"])
    est = res.fe_params.to_numpy()
    assert np.all(np.abs(est - ref["fixed"]["estimate"]) <= 1e-3 * se)
    np.testing.assert_allclose(res.bse_fe.to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(
        res.cov_params().to_numpy()[: len(se), : len(se)], ref["fixed"]["cov"], rtol=2e-3, atol=1e-9
    )


def test_variances(fitted):
    ref, _, res = fitted
    scale = ref["residual_variance"]
    atol = 1e-5 * scale
    np.testing.assert_allclose(res.scale, scale, rtol=1e-3)
    np.testing.assert_allclose(res.cov_re.to_numpy(), ref["random"][0]["cov"], rtol=1e-3, atol=atol)
    assert res.is_singular == ref["singular"]


def test_blups(fitted):
    ref, _, res = fitted
    scale = ref["residual_variance"]
    frame = res.ranef()
    lme4 = ref["ranef"][0]
    np.testing.assert_allclose(frame["condval"], lme4["value"], rtol=1e-3, atol=1e-5 * scale)
    np.testing.assert_allclose(frame["condsd"], lme4["cond_sd"], rtol=1e-3, atol=1e-5 * scale)
    assert list(frame["grp"]) == [str(v) for v in lme4["level"]]
    np.testing.assert_allclose(res.fittedvalues[:20], ref["fitted_head"], rtol=1e-6)


def test_aic_bic_like_lme4(fitted):
    ref, _, res = fitted
    np.testing.assert_allclose(res.aic, ref["aic"], rtol=1e-6)
    np.testing.assert_allclose(res.bic, ref["bic"], rtol=1e-6)


def test_theta_matches_lme4(fitted):
    ref, _, res = fitted
    np.testing.assert_allclose(res.theta, ref["theta"], rtol=2e-3, atol=1e-4)
