"""Profile likelihood intervals against lme4's ``confint(method = "profile")``.

lme4 profiles the ML deviance (a REML fit is refitted by ML first) and interpolates its
profile with splines, so its bounds carry ~1e-5 relative error; the issue asks 1e-3 relative
and we assert that. ``profile_re`` is checked against the core's ``loglike`` (an independent
code path) where nothing else is free, and against the fit at the estimate.
"""

import numpy as np
import pytest
from inference_helpers import fit_reference

from mixedjax.core.covariance import MixedLMParams


def _check(case):
    ref, _, res = fit_reference(case)
    ci = res.conf_int(method="profile")
    expected = ref["profile_ci95"]
    assert list(ci.index) == expected["names"]
    np.testing.assert_allclose(ci["lower"], expected["lower"], rtol=1e-3)
    np.testing.assert_allclose(ci["upper"], expected["upper"], rtol=1e-3)
    return res, ci


@pytest.mark.slow
def test_profile_ci_sleepstudy_reml():
    res, ci = _check("sleepstudy_reml")
    # the interval contains the ML estimates, and is asymmetric for sd (as lme4's)
    sd0 = ci.loc["sd_(Intercept)|Subject"]
    assert sd0["upper"] - 24.74 > 24.74 - sd0["lower"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sleepstudy_ml", "dyestuff_ml"])
def test_profile_ci_other_cases(case):
    _check(case)


def test_profile_ci_dyestuff_reml():
    _check("dyestuff_reml")


@pytest.mark.slow
def test_profile_traces_cross_the_cutoff_at_the_bounds():
    _, _, res = fit_reference("dyestuff_ml")
    traces = res.profile(alpha=0.05, n_points=5)
    ci = res.conf_int(method="profile")
    assert set(traces["parameter"]) == set(ci.index)
    for name, frame in traces.groupby("parameter"):
        zeta = frame["zeta"].to_numpy()
        assert np.all(np.diff(zeta) > 0)  # monotone in the parameter
        # first and last grid points are the 95% bounds: zeta = -1.96 and +1.96
        np.testing.assert_allclose(zeta[[0, -1]], [-1.959964, 1.959964], rtol=1e-4)
        np.testing.assert_allclose(frame["value"].to_numpy()[[0, -1]], ci.loc[name], rtol=1e-8)


def test_profile_re_matches_loglike():
    _, model, res = fit_reference("dyestuff_reml")
    prof = res.profile_re(0, "re", num_low=2, dist_low=1000.0, num_high=2, dist_high=1000.0)
    assert prof.shape == (5, 2)
    # at the estimate: the fit itself
    np.testing.assert_allclose(prof[2], [res.cov_re.iloc[0, 0], res.llf], rtol=1e-8)
    # nothing but sigma is free: the profile is loglike at the held relative variance
    held = np.linspace(res.cov_re.iloc[0, 0] - 1000, res.cov_re.iloc[0, 0] + 1000, 5) / res.scale
    for x, (_, llf) in zip(held, prof, strict=True):
        params = MixedLMParams.from_components(cov_re=np.array([[x]]))
        np.testing.assert_allclose(llf, model.loglike(params, reml=True), rtol=1e-10)
    assert np.all(prof[:, 1] <= res.llf + 1e-9)
    with pytest.raises(ValueError, match="dist_low"):
        res.profile_re(0, "re", dist_low=1e6)
    with pytest.raises(ValueError, match="vtype"):
        res.profile_re(0, "bogus")


# R 4.2, lme4 1.1-31: confint(m, method = "profile", oldNames = FALSE) on the reference data
PASTES = {
    "sd_(Intercept)|batch:cask": (2.15793370845, 4.05358894084),
    "sd_(Intercept)|batch": (0.0, 2.94659111069),
    "sigma": (0.65202335611, 1.08544810373),
    "(Intercept)": (58.66365037854, 61.44301636872),
}
UNCORRELATED = {
    "sd_(Intercept)|Subject": (15.25864687569, 37.78647243624),
    "sd_Days|Subject": (3.96407380669, 8.76915908583),
    "sigma": (22.88055464845, 28.78759759438),
    "(Intercept)": (237.57214800957, 265.23806175910),
    "Days": (7.33406682892, 13.60050510649),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, expected",
    [("pastes_reml", PASTES), ("sleepstudy_uncorrelated_reml", UNCORRELATED)],
)
def test_profile_ci_variance_components(case, expected):
    _, _, res = fit_reference(case)
    ci = res.conf_int(method="profile")
    assert list(ci.index) == list(expected)  # lme4's names and order
    bounds = np.array(list(expected.values()))
    np.testing.assert_allclose(ci["lower"], bounds[:, 0], rtol=1e-3)
    np.testing.assert_allclose(ci["upper"], bounds[:, 1], rtol=1e-3)


@pytest.mark.slow
def test_profile_ci_singular_fit():
    # confint(lmer(Yield ~ 1 + (1 | Batch), Dyestuff2), method = "profile", oldNames = FALSE)
    _, _, res = fit_reference("dyestuff2_reml")
    ci = res.conf_int(method="profile")
    assert list(ci.index) == ["sd_(Intercept)|Batch", "sigma", "(Intercept)"]
    np.testing.assert_allclose(
        ci["lower"], [0.0, 2.89283538397, 4.31210021674], rtol=1e-3, atol=1e-12
    )
    np.testing.assert_allclose(
        ci["upper"], [2.08404348901, 4.81583255246, 7.01909234684], rtol=1e-3
    )
