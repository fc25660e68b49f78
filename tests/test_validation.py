"""Bad input gets a clear ValueError/TypeError naming the column or argument."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedjax


def _data(n_groups=6, size=5, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size).astype(str)
    x = rng.normal(size=g.size)
    y = (
        1
        + x
        + rng.normal(size=n_groups)[np.repeat(np.arange(n_groups), size)]
        + rng.normal(size=g.size)
    )
    return pd.DataFrame({"y": y, "x": x, "z": rng.normal(size=g.size), "g": g})


def test_nan_names_columns_and_counts():
    df = _data()
    df.loc[[1, 4], "x"] = np.nan
    df.loc[7, "y"] = np.inf
    with pytest.raises(ValueError, match=re.escape("exog[x]: 2")) as err:
        mixedjax.MixedLM.from_formula("y ~ x", df, groups="g")
    assert "y: 1" in str(err.value) and "missing='drop'" in str(err.value)


def test_missing_drop_reports_count():
    df = _data()
    df.loc[[1, 4], "x"] = np.nan
    df.loc[9, "g"] = None
    with pytest.warns(UserWarning, match="dropped 3 of 30 rows"):
        model = mixedjax.MixedLM.from_formula("y ~ x", df, groups="g", missing="drop")
    assert model.n_dropped == 3 and model.nobs == 27
    assert np.isfinite(model.fit().llf)


def test_mismatched_lengths():
    df = _data()
    X = np.column_stack([np.ones(len(df)), df.x])
    with pytest.raises(ValueError, match="exog has 29 rows but endog has 30"):
        mixedjax.MixedLM(df.y, X[:-1], df.g)
    with pytest.raises(ValueError, match="groups must be 1-dimensional with 30 entries"):
        mixedjax.MixedLM(df.y, X, df.g[:-2])
    with pytest.raises(ValueError, match="exog_re has 28 rows"):
        mixedjax.MixedLM(df.y, X, df.g, exog_re=X[:-2])


def test_rank_deficient_names_columns():
    df = _data().assign(x2=lambda d: 2 * d.x - 1)
    with pytest.raises(ValueError, match=r"rank deficient: column\(s\) \['x2'\]"):
        mixedjax.MixedLM.from_formula("y ~ x + x2", df, groups="g")


def test_constant_response_and_single_group():
    df = _data()
    with pytest.raises(ValueError, match="endog is constant"):
        mixedjax.MixedLM.from_formula("y ~ x", df.assign(y=3.0), groups="g")
    with pytest.raises(ValueError, match="groups has 1 level"):
        mixedjax.MixedLM.from_formula("y ~ x", df.assign(g="a"), groups="g")


def test_non_numeric_and_bad_arguments():
    df = _data()
    with pytest.raises(TypeError, match="exog column 'g' is not numeric"):
        mixedjax.MixedLM(df.y, df[["x", "g"]], df.g)
    with pytest.raises(ValueError, match="groups: column 'nope' is not in data"):
        mixedjax.MixedLM.from_formula("y ~ x", df, groups="nope")
    with pytest.raises(ValueError, match="formula 'y ~ nope' could not be evaluated"):
        mixedjax.MixedLM.from_formula("y ~ nope", df, groups="g")
    with pytest.raises(ValueError, match="missing must be"):
        mixedjax.MixedLM.from_formula("y ~ x", df, groups="g", missing="sometimes")
    with pytest.raises(TypeError, match="unexpected keyword"):
        mixedjax.MixedLM(df.y, df[["x"]], df.g, color="red")
    model = mixedjax.MixedLM.from_formula("y ~ x", df, groups="g")
    with pytest.raises(ValueError, match="maxiter"):
        model.fit(maxiter=0)
    with pytest.raises(ValueError, match="params has length 7"):
        model.fit(start_params=np.ones(7))


def test_no_nan_and_no_warning_on_clean_fit():
    df = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mixedjax.MixedLM.from_formula("y ~ x", df, groups="g", re_formula="~x").fit()
    values = np.concatenate([res.params, res.bse, res.fittedvalues, [res.llf, res.scale]])
    assert np.all(np.isfinite(values))


def test_maxiter_exhausted_warns_with_reason():
    df = _data()
    model = mixedjax.MixedLM.from_formula("y ~ x", df, groups="g", re_formula="~x")
    with pytest.warns(mixedjax.ConvergenceWarning, match="maxiter"):
        res = model.fit(maxiter=1, gtol=1e-300)
    assert not res.converged
