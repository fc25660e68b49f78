"""Formulas see the caller's names (statsmodels' ``eval_env``): functions local to the
calling code work in every formula part and in ``predict(newdata)``.

Oracles: the same model written with the transformed column in the data (estimates equal
to 1e-8 relative, log-likelihood to 1e-10); scaling a column by 2 halves its coefficient and
leaves the ML log-likelihood unchanged.
"""

import pickle

import numpy as np
import pandas as pd
import pytest

import mixedjax


@pytest.fixture(scope="module")
def sleep():
    return mixedjax.datasets.load("sleepstudy")


def test_local_function_in_statsmodels_formulas(sleep):
    def times_two(x):
        return 2 * x

    local = mixedjax.MixedLM.from_formula(
        "Reaction ~ times_two(Days)", sleep, groups="Subject", re_formula="~times_two(Days)"
    ).fit()
    data = sleep.assign(twice=2 * sleep["Days"])
    plain = mixedjax.MixedLM.from_formula(
        "Reaction ~ twice", data, groups="Subject", re_formula="~twice"
    ).fit()
    assert "times_two(Days)" in local.model.exog_names
    np.testing.assert_allclose(local.fe_params.to_numpy(), plain.fe_params.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(local.llf, plain.llf, rtol=1e-10)
    new = sleep.iloc[[0, 15, 40]]
    np.testing.assert_allclose(
        local.predict(new), plain.predict(data.iloc[[0, 15, 40]]), rtol=1e-10
    )


def test_local_function_in_lme4_terms_and_predict(sleep):
    def times_two(x):
        return 2 * x

    local = mixedjax.MixedLM.from_formula(
        "Reaction ~ times_two(Days) + (times_two(Days) | Subject)", sleep
    ).fit(reml=False)
    plain = mixedjax.MixedLM.from_formula("Reaction ~ Days + (Days | Subject)", sleep)
    plain = plain.fit(reml=False)
    # a column scaled by 2: coefficient halved, ML likelihood unchanged (REML's changes by
    # log 2 through log det X'V^-1 X)
    np.testing.assert_allclose(
        2 * local.fe_params["times_two(Days)"], plain.fe_params["Days"], rtol=1e-8
    )
    np.testing.assert_allclose(local.llf, plain.llf, rtol=1e-10)
    new = sleep.iloc[[3, 100]]
    np.testing.assert_allclose(local.predict(new), plain.predict(new), rtol=1e-8)


def test_eval_env_choices(sleep):
    def times_two(x):
        return 2 * x

    with pytest.raises(ValueError, match="times_two"):
        mixedjax.MixedLM.from_formula(
            "Reaction ~ times_two(Days)", sleep, groups="Subject", eval_env=-1
        )
    through_mixedlm = mixedjax.mixedlm("Reaction ~ times_two(Days) + (1 | Subject)", sleep)
    np.testing.assert_array_equal(through_mixedlm.exog[:, 1], 2 * sleep["Days"].to_numpy())
    model = mixedjax.MixedLM.from_formula(
        "Reaction ~ f(Days)", sleep, groups="Subject", eval_env={"f": lambda x: x + 1.0}
    )
    np.testing.assert_array_equal(model.exog[:, 1], sleep["Days"].to_numpy() + 1.0)
    with pytest.raises(TypeError, match="eval_env"):
        mixedjax.MixedLM.from_formula("Reaction ~ Days", sleep, groups="Subject", eval_env="x")


def test_data_columns_win_over_the_callers_names(sleep):
    Days = np.zeros(len(sleep))  # noqa: N806, F841  (a caller variable named like a column)
    model = mixedjax.MixedLM.from_formula("Reaction ~ Days", sleep, groups="Subject")
    np.testing.assert_array_equal(model.exog[:, 1], sleep["Days"].to_numpy())


def test_caller_variables_in_a_formula(sleep):
    shift = 5.0  # noqa: F841  (read by the formula)
    model = mixedjax.MixedLM.from_formula("Reaction ~ I(Days - shift)", sleep, groups="Subject")
    np.testing.assert_array_equal(model.exog[:, 1], sleep["Days"].to_numpy() - 5.0)


def test_pickle_keeps_the_names_that_pickle(sleep):
    def times_two(x):
        return 2 * x

    res = mixedjax.MixedLM.from_formula(
        "Reaction ~ times_two(Days) + np.sqrt(Days)", sleep, groups="Subject"
    ).fit()
    again = pickle.loads(pickle.dumps(res))
    assert again.llf == res.llf
    # a function local to this test cannot be pickled, so the copy cannot evaluate it
    with pytest.raises(ValueError, match="times_two"):
        again.predict(sleep.iloc[:2])
    np.testing.assert_allclose(res.predict(sleep.iloc[:2]), res.fittedvalues[:2], rtol=1e-10)


def test_glmer_and_from_chunks_see_the_callers_functions(sleep):
    def centred(x):
        return x - 4.5

    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {"g": np.repeat(np.arange(10), 6), "x": rng.normal(size=60), "y": rng.poisson(2, 60)}
    )
    glmm = mixedjax.glmer("y ~ centred(x) + (1 | g)", df, family="poisson")
    np.testing.assert_array_equal(glmm.exog[:, 1], df["x"].to_numpy() - 4.5)

    chunks = (sleep.iloc[i : i + 60] for i in range(0, len(sleep), 60))
    chunked = mixedjax.from_chunks(chunks, "Reaction ~ centred(Days) + (Days | Subject)")
    whole = mixedjax.MixedLM.from_formula("Reaction ~ centred(Days) + (Days | Subject)", sleep)
    np.testing.assert_allclose(chunked.fit().llf, whole.fit().llf, rtol=1e-10)
