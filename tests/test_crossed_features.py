"""Prediction, simulation and the bootstrap of the crossed engine, written once above both
engines (mixedjax.results.features, mixedjax.inference.predict / predict_crossed).

Oracle: a one-factor model fitted by both engines is the same model, so every number must
agree between them (1e-9; the engines share nothing below the results: Henderson's
equations in the spherical form against the one-factor engine's per-group formula, the
crossed refits against the one-factor refits). Same seed, same draws: the simulations and
bootstrap replicates agree too. Then the crossed-only cases: predict(newdata) on the fit's
own rows gives the fitted values, a level never seen gets no effect and its prior variance,
and statsmodels' one-group spelling predicts as the lme4 formula does.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference

import mixedjax
from mixedjax.spec.terms import RandomTerm


@pytest.fixture(scope="module")
def both_engines():
    """Weighted sleepstudy ``(Days | Subject)`` by the crossed and the one-factor engine."""
    _, data = load_reference("sleepstudy_weights_reml")
    codes, levels = pd.factorize(data["Subject"], sort=True)
    Z = np.column_stack([np.ones(len(data)), data["Days"].to_numpy(float)])
    term = RandomTerm("Subject", ("(Intercept)", "Days"), Z, codes, np.asarray(levels).astype(str))
    weights = data["w"].to_numpy()
    crossed = mixedjax.MixedLM.from_terms(
        data["Reaction"].to_numpy(float), Z, [term], ["Intercept", "Days"], "Reaction", weights
    ).fit()
    one = mixedjax.mixedlm(
        "Reaction ~ Days", data, groups="Subject", re_formula="~Days", weights="w"
    ).fit()
    return crossed, one


@pytest.mark.parametrize("include_random", [True, False])
@pytest.mark.parametrize("interval", [None, "confidence", "prediction"])
def test_crossed_prediction_equals_the_one_factor_engine(both_engines, include_random, interval):
    crossed, one = both_engines
    a = crossed.predict(include_random=include_random, interval=interval)
    b = one.predict(include_random=include_random, interval=interval)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9)


@pytest.mark.slow  # heavy cold (>20 s on 2 cores): the default suite stays under 5 minutes
def test_crossed_simulation_and_bootstrap_equal_the_one_factor_engine(both_engines):
    crossed, one = both_engines
    np.testing.assert_allclose(crossed.simulate(3, seed=4), one.simulate(3, seed=4), rtol=1e-10)
    a, b = crossed.parametric_bootstrap(8, seed=1), one.parametric_bootstrap(8, seed=1)
    assert list(a.replicates.columns) == list(b.replicates.columns)
    np.testing.assert_allclose(a.replicates.to_numpy(), b.replicates.to_numpy(), rtol=1e-7)
    assert a.converged.all()


@pytest.fixture(scope="module")
def penicillin():
    data = mixedjax.datasets.load("penicillin")
    return data, mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", data).fit()


def test_crossed_predict_newdata(penicillin):
    data, res = penicillin
    np.testing.assert_allclose(res.predict(), res.fittedvalues, rtol=1e-12)
    np.testing.assert_allclose(res.predict(data), res.fittedvalues, rtol=1e-12)
    rows = data.iloc[[0, 0]].copy()
    rows.iloc[1, rows.columns.get_loc("plate")] = "never seen"
    frame = res.predict(rows, interval="confidence")
    sample = res.random_effects["sample"].loc[str(rows["sample"].iloc[0])].iloc[0]
    np.testing.assert_allclose(frame["predicted"].iloc[1], res.fe_params.iloc[0] + sample)
    plate_var = res.varcorr().set_index("group").loc["plate", "vcov"]
    assert frame["se"].iloc[1] ** 2 > plate_var  # the unseen plate's prior variance
    with pytest.raises(ValueError, match="allow_new_levels"):
        res.predict(rows, allow_new_levels=False)
    with pytest.raises(ValueError, match="newdata"):
        res.predict(exog=np.ones((2, 1)))
    with pytest.raises(ValueError, match="'sample'"):
        res.predict(rows.drop(columns="sample"))


def test_statsmodels_spelling_predicts_as_lme4(penicillin):
    data, res = penicillin
    vc = {"plate": "0 + C(plate)", "sample": "0 + C(sample)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = mixedjax.mixedlm("diameter ~ 1", data.assign(ONE=1), groups="ONE", vc_formula=vc)
    sm = sm.fit()
    new = data.iloc[:4]
    np.testing.assert_allclose(
        sm.predict(new, interval="prediction").to_numpy(),
        res.predict(new, interval="prediction").to_numpy(),
        rtol=1e-8,
    )


@pytest.mark.slow  # ~15 s: both engines, ML refits
def test_crossed_plots_and_lrt_across_engines(penicillin):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    data, res = penicillin
    assert res.plot_caterpillar() is not None
    assert res.plot_residuals() is not None
    one = mixedjax.mixedlm("diameter ~ 1 + (1 | plate)", data).fit()
    table = mixedjax.lrt(one, res)  # a one-factor fit nested in a crossed one
    assert list(table.index) == ["m0", "m1"]
    assert table["Df"].iloc[1] == 1 and table["Chisq"].iloc[1] > 0


@pytest.mark.slow  # ~30 s: both engines' batched programs
def test_crossed_fit_many_equals_the_one_factor_engine_and_single_fits(both_engines):
    crossed, one = both_engines
    y = crossed.model.endog
    Y = np.column_stack([y, y + 5 * crossed.model.exog[:, 1], 0.5 * y])
    a, b = crossed.model.fit_many(Y), one.model.fit_many(Y)
    assert a.converged.all()
    np.testing.assert_allclose(a.llf, b.llf, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(a.fe_params), np.asarray(b.fe_params), rtol=1e-7)
    np.testing.assert_allclose(a.llf[0], crossed.llf, rtol=1e-10)
    member = a.result(1)
    assert type(member) is type(crossed)
    np.testing.assert_allclose(member.llf, b.result(1).llf, rtol=1e-9)
    variances = a.term_variances()
    np.testing.assert_allclose(variances["Subject Days Var"], b.cov_re[:, 1, 1], rtol=1e-6)
