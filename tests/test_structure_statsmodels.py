"""statsmodels' crossed spelling through ``MixedLM(...)`` with ``exog_vc``: routed to the
crossed engine, same fit as the lme4 formula; ``free`` and ``start_params`` map onto θ."""

import numpy as np
import pytest
from conftest import load_reference

import mixedjax
from mixedjax.model import statsmodels_crossed


def _exog_vc(data):
    """statsmodels' dict layout {name: {group: (n_i, k) matrix}} for one all-rows group."""
    out = {}
    for name in ("plate", "sample"):
        levels = sorted(data[name].unique())
        out[name] = {1: (data[name].to_numpy()[:, None] == np.asarray(levels)).astype(float)}
    return out


@pytest.fixture(scope="module")
def penicillin():
    ref, data = load_reference("penicillin_reml")
    return ref, data


def _model(data):
    n = len(data)
    return mixedjax.MixedLM(data["diameter"], np.ones((n, 1)), np.ones(n), exog_vc=_exog_vc(data))


def test_exog_vc_dict_is_routed_and_matches_lme4(penicillin):
    ref, data = penicillin
    model = _model(data)
    assert model.engine == "crossed"
    res = model.fit()
    assert type(res) is mixedjax.MixedLMResults and res.model is model
    assert -2 * res.llf <= ref["objective"] * (1 + 1e-9)
    lme4 = [r["cov"][0][0] for r in ref["random"]]  # plate, sample (the vc order here too)
    np.testing.assert_allclose(res.vcomp, lme4, rtol=1e-3)
    # the dense one-group statsmodels path gives the same likelihood at the optimum
    params = mixedjax.MixedLMParams.from_components(vcomp=res.vcomp / res.scale)
    np.testing.assert_allclose(model.loglike(params, reml=True), res.llf, rtol=1e-9)


def test_free_mask_and_start_params(penicillin):
    _, data = penicillin
    model = _model(data)
    full = model.fit()
    start = mixedjax.MixedLMParams.from_components(vcomp=np.array([2.0, 9.0]))
    free = mixedjax.MixedLMParams.from_components(vcomp=np.array([1.0, 0.0]))
    held = model.fit(start_params=start, free=free)
    # θ order is plate (24 levels), sample (6): sample held at sqrt(9)
    np.testing.assert_allclose(held.theta[1], 3.0, rtol=1e-12)
    assert held.llf <= full.llf + 1e-9
    np.testing.assert_allclose(held.vcomp[1] / held.scale, 9.0, rtol=1e-10)


def test_large_one_group_model_skips_the_dense_path(penicillin, monkeypatch):
    ref, data = penicillin
    monkeypatch.setattr(statsmodels_crossed, "DENSE_VC_LIMIT", 10)
    model = _model(data)
    assert model._statsmodels_likelihood is None
    with pytest.raises(ValueError, match="crossed engine"):
        model.loglike(np.ones(2))
    assert -2 * model.fit().llf <= ref["objective"] * (1 + 1e-9)
