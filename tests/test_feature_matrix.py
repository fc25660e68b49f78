"""Every post-fit feature on every kind of model (issue "One model, one result").

Each cell runs the feature and checks a property that would fail if the feature silently
did the wrong thing for that kind: predictions on the fit's own rows equal the fitted
values (1e-10), simulations have the model's shape and mean, the bootstrap converges, a
profile interval brackets the estimate, df are positive and below n, LRT against an ML
refit has the right Df, displays name every grouping factor, a pickle round trip keeps the
log-likelihood, fit_many's first member and fit_models' members equal the fit. The
numbers themselves are checked against lme4 and independent oracles in the other test
files. Heavy features (bootstrap, profile, fit_many, fit_models) and the kinds whose paths
are covered elsewhere run with ``-m slow``.
"""

import pickle

import numpy as np
import pandas as pd
import pytest

import mixedjax


def _crossed_slopes() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n_subj, n_item = 12, 10
    df = pd.DataFrame(
        {
            "subj": np.repeat(np.arange(n_subj), n_item).astype(str),
            "item": np.tile(np.arange(n_item), n_subj).astype(str),
            "x": rng.standard_normal(n_subj * n_item),
        }
    )
    b0, b1 = rng.standard_normal(n_subj), 0.5 * rng.standard_normal(n_subj)
    c0 = rng.standard_normal(n_item)
    codes_s, codes_i = np.repeat(np.arange(n_subj), n_item), np.tile(np.arange(n_item), n_subj)
    df["y"] = (
        1 + df["x"] + b0[codes_s] + b1[codes_s] * df["x"] + c0[codes_i]
        + rng.standard_normal(len(df))
    )  # fmt: skip
    return df


def _data(name):
    return _crossed_slopes() if name == "crossed_slopes" else mixedjax.datasets.load(name)


#: kind -> (data set, formula, mixedlm keyword arguments, grouping factors, default run?)
KINDS = {
    "lme4_one_factor": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", {}, ["Subject"], 1),
    "statsmodels_one_factor": (
        "sleepstudy", "Reaction ~ Days", {"groups": "Subject", "re_formula": "~Days"},
        ["Subject"], 0,
    ),
    "uncorrelated": ("sleepstudy", "Reaction ~ Days + (Days || Subject)", {}, ["Subject"], 0),
    "nested": ("pastes", "strength ~ 1 + (1 | batch/cask)", {}, ["batch", "batch:cask"], 1),
    "crossed": (
        "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", {}, ["plate", "sample"], 1,
    ),
    "crossed_slopes": (
        "crossed_slopes", "y ~ x + (x | subj) + (1 | item)", {}, ["subj", "item"], 1,
    ),
    "statsmodels_crossed": (
        "penicillin", "diameter ~ 1",
        {"groups": "ONE", "vc_formula": {"plate": "0 + C(plate)", "sample": "0 + C(sample)"}},
        ["plate", "sample"], 0,
    ),
}  # fmt: skip

HEAVY = {"bootstrap", "profile", "fit_many", "fit_models"}


@pytest.fixture(scope="module")
def fits():
    cache = {}

    def get(kind):
        if kind not in cache:
            name, formula, kwargs, _, _ = KINDS[kind]
            data = _data(name).assign(ONE=1)
            cache[kind] = (data, mixedjax.mixedlm(formula, data, **kwargs).fit())
        return cache[kind]

    return get


def check_predict(data, res, factors):
    np.testing.assert_allclose(res.predict(data), res.fittedvalues, rtol=1e-10, atol=1e-10)
    frame = res.predict(data.iloc[:4], interval="prediction")
    assert np.all(frame["lower"] < frame["predicted"]) and np.all(frame["se"] > 0)


def check_simulate(data, res, factors):
    sims = res.simulate(200, seed=1)
    assert sims.shape == (200, res.nobs)
    assert abs(sims.mean() - res.fittedvalues.mean()) < 5 * sims.mean(axis=1).std() + 1e-9


def check_bootstrap(data, res, factors):
    boot = res.parametric_bootstrap(6, seed=0)
    assert boot.converged.all() and boot.replicates.shape[0] == 6


def check_profile(data, res, factors):
    ci = res.conf_int(method="profile")  # lme4's row names: "(Intercept)", "sd_...|g", ...
    names = ["(Intercept)" if n in ("Intercept", "const") else n for n in res.fe_params.index]
    est = res.fe_params.to_numpy()
    assert np.all(ci.loc[names, "lower"].to_numpy() < est)
    assert np.all(est < ci.loc[names, "upper"].to_numpy())
    assert ci.loc["sigma", "lower"] < np.sqrt(res.scale) < ci.loc["sigma", "upper"]


def check_ddf(data, res, factors):
    for ddf in ("satterthwaite", "kenward-roger"):
        df = res.coef_table(ddf=ddf)["df"].to_numpy()
        assert np.all((df > 0) & (df < res.nobs))
    # lmerTest's anova: one F test per term but the intercept (these kinds: numeric terms)
    terms = [n for n in res.fe_params.index if n not in ("Intercept", "(Intercept)")]
    assert list(res.anova().index) == terms


def check_lrt(data, res, factors):
    table = mixedjax.lrt(res, res.model.fit(reml=False))
    assert table["Df"].iloc[1] == 0


def check_plots(data, res, factors):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert res.plot_caterpillar() is not None
    assert res.plot_residuals() is not None
    plt.close("all")


def check_display(data, res, factors):
    groups = set(res.varcorr()["group"])
    assert all(f in groups or f.replace(":", "") in "".join(groups) for f in factors[:1])
    assert set(res.ranef()["grpvar"]) and "Residual" in groups
    assert "Log-Likelihood" in str(res.summary()) and "<table" in res._repr_html_()


def check_pickle(data, res, factors):
    again = pickle.loads(pickle.dumps(res))
    assert again.llf == res.llf
    np.testing.assert_array_equal(again.fittedvalues, res.fittedvalues)


def check_fit_many(data, res, factors):
    Y = np.column_stack([res.model.endog, 2 * res.model.endog])
    batch = res.model.fit_many(Y)
    np.testing.assert_allclose(batch.llf[0], res.llf, rtol=1e-7)


def check_fit_models(data, res, factors):
    batch = mixedjax.fit_models([res.model, res.model], reml=res.reml)
    np.testing.assert_allclose(batch.llf, [res.llf, res.llf], rtol=1e-7)


FEATURES = {
    "predict": check_predict,
    "simulate": check_simulate,
    "bootstrap": check_bootstrap,
    "profile": check_profile,
    "ddf": check_ddf,
    "lrt": check_lrt,
    "plots": check_plots,
    "display": check_display,
    "pickle": check_pickle,
    "fit_many": check_fit_many,
    "fit_models": check_fit_models,
}


def _params():
    for kind, (*_, default) in KINDS.items():
        for feature in FEATURES:
            marks = []
            if feature in HEAVY or not default:
                marks.append(pytest.mark.slow)
            yield pytest.param(kind, feature, marks=marks, id=f"{kind}-{feature}")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind, feature", list(_params()))
def test_feature_on_kind(fits, kind, feature):
    data, res = fits(kind)
    FEATURES[feature](data, res, KINDS[kind][3])
