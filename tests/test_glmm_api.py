"""glmer / MixedGLM front end: bad input gets a clear error naming the column or argument;
the array API fits what the formula API fits."""

import json

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.families import Binomial
from tests.conftest import REFERENCE_DIR


@pytest.fixture(scope="module")
def cbpp():
    return pd.read_csv(REFERENCE_DIR / "data/cbpp.csv", dtype={"herd": str, "period": str})


@pytest.fixture(scope="module")
def counts():
    return pd.read_csv(REFERENCE_DIR / "data/counts.csv", dtype={"g": str})


def test_response_outside_the_support_names_the_column(cbpp, counts):
    bad = counts.assign(y=counts["y"].where(counts.index != 3, -1))
    with pytest.raises(ValueError, match="Poisson response 'y' must be non-negative"):
        mixedjax.glmer("y ~ x + (1 | g)", bad, family="poisson")
    frac = counts.assign(y=counts["y"] + 0.5)
    with pytest.raises(ValueError, match="Poisson response 'y' must be whole counts"):
        mixedjax.glmer("y ~ x + (1 | g)", frac, family="poisson")
    big = cbpp.assign(prop=cbpp["prop"] * 3)
    with pytest.raises(ValueError, match="binomial response 'prop' must be a proportion"):
        mixedjax.glmer("prop ~ period + (1 | herd)", big, family="binomial", weights="size")
    with pytest.raises(ValueError, match="'prop': successes must be whole numbers"):
        mixedjax.glmer("prop ~ period + (1 | herd)", cbpp, family="binomial")  # no trials
    half = cbpp.assign(incidence=cbpp["incidence"] + 0.5)
    with pytest.raises(ValueError, match=r"'cbind\(incidence, size - incidence\)'.*whole"):
        mixedjax.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", half)
    with pytest.raises(ValueError, match="cbind: 'size - incidence - 10' has negative counts"):
        mixedjax.glmer("cbind(incidence, size - incidence - 10) ~ period + (1 | herd)", cbpp)
    missing = counts.assign(y=counts["y"].where(counts.index != 5))
    with pytest.raises(ValueError, match="missing or non-finite values in y"):
        mixedjax.glmer("y ~ x + (1 | g)", missing, family="poisson")


def test_unsupported_models_raise_clear_errors(cbpp, counts):
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    with pytest.raises(ValueError, match="nAGQ = 5 .* single scalar random effect"):
        mixedjax.glmer("y ~ x + (x | g)", counts, family="poisson", nAGQ=5)
    for bad in (1.5, -2, True):
        with pytest.raises(ValueError, match="nAGQ must be a non-negative integer"):
            mixedjax.glmer(f, cbpp, nAGQ=bad)
    crossed = counts.assign(h=np.tile(["a", "b", "c"], len(counts) // 3))
    with pytest.raises(ValueError, match=r"several grouping factors \(g, h\).*nAGQ = 1"):
        mixedjax.glmer("y ~ x + (1 | g) + (1 | h)", crossed, family="poisson", nAGQ=2)
    with pytest.raises(ValueError, match="cbind.*binomial, not poisson"):
        mixedjax.glmer(f, cbpp, family="poisson")
    with pytest.raises(ValueError, match="family must be one of"):
        mixedjax.glmer(f, cbpp, family="binomal")
    with pytest.raises(ValueError, match="takes a link in"):
        mixedjax.glmer(f, cbpp, family=("binomial", "inverse"))
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        mixedjax.glmer(f, cbpp.to_dict())
    with pytest.raises(ValueError, match="unknown column 'herdz'"):
        mixedjax.glmer("cbind(incidence, size - incidence) ~ period + (1 | herdz)", cbpp)
    with pytest.raises(ValueError, match="has no random-effects term"):
        mixedjax.glmer("cbind(incidence, size - incidence) ~ period", cbpp)
    with pytest.raises(ValueError, match="weights must be non-negative"):
        mixedjax.glmer("y ~ x + (1 | g)", counts, family="poisson", weights=-np.ones(len(counts)))


def test_array_api_fits_what_the_formula_fits(counts):
    ref = json.loads((REFERENCE_DIR / "glmm_counts_slope.json").read_text())
    X = np.column_stack([np.ones(len(counts)), counts["x"]])
    model = mixedjax.MixedGLM(
        counts["y"], X, counts["g"], exog_re=X, family="poisson", offset=np.log(counts["expo"])
    )
    fit = model.fit()
    assert fit.llf >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
    np.testing.assert_allclose(fit.fe_params, ref["fixed"]["estimate"], rtol=1e-5)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-5)
    assert list(fit.random_effects) == sorted(counts["g"].unique())


def test_family_objects_and_pairs_are_accepted(cbpp):
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    by_object = mixedjax.glmer(f, cbpp, family=Binomial("cloglog"))
    by_pair = mixedjax.glmer(f, cbpp, family=("binomial", "cloglog"))
    assert by_object.family == by_pair.family == mixedjax.families.Binomial("cloglog")
    assert "cloglog" in repr(by_object)
