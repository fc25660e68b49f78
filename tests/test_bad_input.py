"""Bad-input table: each case raises the exact exception type with a message that names the
offending column or argument; accepted conversions (bool, pandas nullable dtypes without NA)
give the same fit as plain floats; dropped rows are counted and reported."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from mixedjax import MixedLM, MixedLMParams

N = 24
RNG = np.random.default_rng(0)
DF = pd.DataFrame(
    {
        "y": RNG.normal(size=N),
        "x": RNG.normal(size=N),
        "g": np.repeat(list("abcdef"), 4),
    }
)
ONES = np.ones((N, 1))


def _with_nan(values, row=3, value=np.nan):
    out = np.array(values, dtype=float)
    out[row] = value
    return out


def _vc(nan_row=None):
    block = np.ones((4, 1))
    if nan_row is not None:
        block = block.copy()
        block[nan_row] = np.nan
    return {"cask": {k: block for k in "abcdef"}}


def _model(**overrides):
    args = {"endog": DF["y"], "exog": ONES, "groups": DF["g"].to_numpy()}
    args.update(overrides)
    return MixedLM(**args)


def _fitted_model():
    return MixedLM(DF["y"], np.column_stack([ONES[:, 0], DF["x"]]), DF["g"].to_numpy())


# (id, build, exception, regex the message must match: names the column/argument)
CONSTRUCTOR_CASES = [
    # ---- wrong dtypes
    ("object column", lambda: _model(exog=DF[["x"]].astype(object)), TypeError, r"'x'.*object"),
    ("string column", lambda: _model(exog=DF[["g"]]), TypeError, r"exog column 'g'"),
    (
        "categorical column",
        lambda: _model(exog=pd.DataFrame({"f": pd.Categorical(DF["g"])})),
        TypeError,
        r"exog column 'f'.*category",
    ),
    (
        "datetime column",
        lambda: _model(exog=pd.DataFrame({"t": pd.date_range("2020", periods=N)})),
        TypeError,
        r"exog column 't'.*datetime",
    ),
    (
        "timedelta exog_re",
        lambda: _model(exog_re=pd.DataFrame({"dt": pd.to_timedelta(np.arange(N), "D")})),
        TypeError,
        r"exog_re column 'dt'",
    ),
    ("object ndarray", lambda: _model(exog=np.array([["a"]] * N)), TypeError, r"exog must be"),
    ("string endog", lambda: _model(endog=DF["g"]), TypeError, r"endog column 'g'"),
    # ---- missing values, every role, default missing="none" and missing="raise"
    *[
        (
            f"NaN in {role} ({policy})",
            (lambda role=role, policy=policy: _model(missing=policy, **_nan_in(role))),
            ValueError,
            pattern,
        )
        for role, pattern in [
            ("endog", r"missing or non-finite values in y: 1 row"),
            ("exog", r"exog\[x\]: 1 row"),
            ("groups", r"groups: 1 row"),
            ("exog_re", r"exog_re\[slope\]: 1 row"),
            ("exog_vc", r"exog_vc\[cask\]: 6 row"),
            ("inf endog", r"values in y: 1 row"),
            ("Int64 NA", r"exog\[k\]: 1 row"),
        ]
        for policy in ("none", "raise")
    ],
    ("missing policy", lambda: _model(missing="ignore"), ValueError, r"missing must be"),
    # ---- sizes and shapes
    (
        "empty data",
        lambda: _model(endog=np.zeros(0), exog=np.zeros((0, 1)), groups=np.zeros(0)),
        ValueError,
        r"no observations",
    ),
    (
        "single row",
        lambda: _model(endog=np.ones(1), exog=np.ones((1, 1)), groups=np.zeros(1)),
        ValueError,
        r"endog is constant",
    ),
    (
        "all rows dropped",
        lambda: _model(endog=np.full(N, np.nan), missing="drop"),
        ValueError,
        r"no observations \(after dropping",
    ),
    (
        "duplicated columns",
        lambda: _model(exog=pd.DataFrame(np.ones((N, 2)), columns=["a", "a"])),
        ValueError,
        r"exog: duplicated column names \['a'\]",
    ),
    ("exog rows", lambda: _model(exog=np.ones((N - 1, 1))), ValueError, r"exog has 23 rows"),
    (
        "exog_re rows",
        lambda: _model(exog_re=np.ones((N + 1, 1))),
        ValueError,
        r"exog_re has 25 rows",
    ),
    (
        "groups length",
        lambda: _model(groups=DF["g"].to_numpy()[:-1]),
        ValueError,
        r"groups must be 1-dimensional with 24",
    ),
    ("3-d exog", lambda: _model(exog=np.ones((N, 1, 1))), ValueError, r"exog must be 1- or 2-d"),
    ("two-column endog", lambda: _model(endog=np.ones((N, 2))), ValueError, r"endog must be one"),
    (
        "one group",
        lambda: _model(groups=np.zeros(N)),
        ValueError,
        r"groups has 1 level",
    ),
    (
        "zero exog_re column",
        lambda: _model(exog_re=pd.DataFrame({"z": np.zeros(N)})),
        ValueError,
        r"exog_re: column\(s\) \['z'\] are identically zero",
    ),
    (
        "rank-deficient exog",
        lambda: _model(exog=np.column_stack([ONES, 2 * ONES])),
        ValueError,
        r"\['x1'\]",
    ),
    ("constant endog", lambda: _model(endog=np.ones(N)), ValueError, r"endog is constant"),
    (
        "unknown keyword",
        lambda: _model(missng="drop"),
        TypeError,
        r"unexpected keyword argument\(s\) \['missng'\]",
    ),
    (
        "formula unknown column",
        lambda: MixedLM.from_formula("y ~ z", DF, groups="g"),
        ValueError,
        r"formula 'y ~ z'.*`z`",
    ),
    (
        "formula unknown groups",
        lambda: MixedLM.from_formula("y ~ x", DF, groups="h"),
        ValueError,
        r"groups: column 'h'",
    ),
    (
        "formula data type",
        lambda: MixedLM.from_formula("y ~ x", DF.to_numpy(), groups="g"),
        TypeError,
        r"data must be a pandas DataFrame",
    ),
]


def _nan_in(role):
    """Keyword arguments for ``_model`` with one bad value in ``role``."""
    if role == "endog":
        return {"endog": pd.Series(_with_nan(DF["y"]), name="y")}
    if role == "inf endog":
        return {"endog": pd.Series(_with_nan(DF["y"], value=np.inf), name="y")}
    if role == "exog":
        return {"exog": pd.DataFrame({"x": _with_nan(DF["x"])})}
    if role == "groups":
        g = DF["g"].to_numpy().astype(object)
        g[3] = None
        return {"groups": g}
    if role == "exog_re":
        return {"exog_re": pd.DataFrame({"slope": _with_nan(DF["x"])})}
    if role == "exog_vc":
        return {"exog_vc": _vc(nan_row=0)}
    if role == "Int64 NA":
        k = pd.array([None] + list(range(N - 1)), dtype="Int64")
        return {"exog": pd.DataFrame({"k": k})}
    raise AssertionError(role)


@pytest.mark.parametrize(
    "build, exception, pattern",
    [c[1:] for c in CONSTRUCTOR_CASES],
    ids=[c[0] for c in CONSTRUCTOR_CASES],
)
def test_constructor_rejects(build, exception, pattern):
    with pytest.raises(exception) as info:
        build()
    assert type(info.value) is exception
    assert re.search(pattern, str(info.value)), str(info.value)


FIT_CASES = [
    ("maxiter 0", {"maxiter": 0}, ValueError, r"maxiter must be a positive integer"),
    ("maxiter float", {"maxiter": 2.5}, ValueError, r"maxiter must be a positive integer"),
    ("gtol negative", {"gtol": -1.0}, ValueError, r"gtol must be a positive number"),
    ("gtol nan", {"gtol": float("nan")}, ValueError, r"gtol must be a positive number"),
    ("method", {"method": "nm"}, ValueError, r"method must be one of"),
    ("unknown keyword", {"tol": 1e-3}, TypeError, r"unexpected keyword argument\(s\) \['tol'\]"),
    ("reml string", {"reml": "yes"}, TypeError, r"reml must be True or False"),
    ("fe_pen", {"fe_pen": 1.0}, ValueError, r"fe_pen \(a fixed-effects penalty"),
    ("cov_pen", {"cov_pen": 1.0}, TypeError, r"cov_pen must be a mixedjax"),
    ("start length", {"start_params": np.ones(5)}, ValueError, r"params has length 5"),
    ("start NaN", {"start_params": np.array([np.nan])}, ValueError, r"start_params contains NaN"),
    (
        "start not PSD",
        {"start_params": MixedLMParams.from_components(cov_re=-np.eye(1))},
        ValueError,
        r"cov_re must be positive semi-definite",
    ),
    ("start text", {"start_params": "zero"}, TypeError, r"start_params must be numeric"),
    ("free length", {"free": np.ones(4)}, ValueError, r"free has length 4"),
    ("free NaN", {"free": np.array([np.nan])}, ValueError, r"free contains NaN"),
    ("free not 0/1", {"free": np.array([0.5])}, ValueError, r"free must hold only 0"),
]


@pytest.mark.parametrize(
    "kwargs, exception, pattern", [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES]
)
def test_fit_rejects(kwargs, exception, pattern):
    model = _fitted_model()
    with pytest.raises(exception) as info:
        model.fit(**kwargs)
    assert type(info.value) is exception
    assert re.search(pattern, str(info.value)), str(info.value)


# ------------------------------------------------------------------ accepted conversions
def _llf(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return model.fit().llf


def test_bool_and_nullable_dtypes_without_na_equal_floats():
    # One 0/1 column and no intercept: the same shapes as every other fit in this file.
    b = (DF["x"] > 0).to_numpy()
    plain = _llf(_model(exog=pd.DataFrame({"b": b.astype(float)})))
    variants = {
        "bool": pd.DataFrame({"b": b}),
        "boolean": pd.DataFrame({"b": pd.array(b, dtype="boolean")}),
        "Int64": pd.DataFrame({"b": pd.array(b.astype(int), dtype="Int64")}),
        "Float64": pd.DataFrame({"b": pd.array(b.astype(float), dtype="Float64")}),
        "numpy bool": b[:, None],
    }
    for name, exog in variants.items():
        np.testing.assert_allclose(_llf(_model(exog=exog)), plain, rtol=1e-12, err_msg=name)
    y64 = pd.Series(pd.array(DF["y"].to_numpy(), dtype="Float64"), name="y")
    np.testing.assert_allclose(_llf(_model(endog=y64)), _llf(_model()), rtol=1e-12)


def test_categorical_groups_equal_string_groups():
    plain = _llf(_model())
    np.testing.assert_allclose(_llf(_model(groups=pd.Categorical(DF["g"]))), plain, rtol=1e-12)
    np.testing.assert_allclose(_llf(_model(groups=pd.factorize(DF["g"])[0])), plain, rtol=1e-12)


def test_variance_components_without_exog_re():
    """exog_vc alone (no exog_re) through the array API (was an IndexError)."""
    model = _model(exog_vc=_vc())
    assert model.k_re == 0 and model.vc_names == ["cask"]
    # One cask column per group: the same model as a random intercept.
    params = MixedLMParams.from_components(vcomp=np.array([0.7]))
    intercept = MixedLMParams.from_components(cov_re=np.array([[0.7]]))
    np.testing.assert_allclose(model.loglike(params), _model().loglike(intercept), rtol=1e-12)


# ------------------------------------------------------------------ missing="drop"
@pytest.mark.parametrize("role", ["endog", "exog", "groups", "exog_re", "Int64 NA"])
def test_drop_counts_and_reports_rows(role):
    with pytest.warns(UserWarning, match=r"dropped 1 of 24 rows"):
        model = _model(missing="drop", **_nan_in(role))
    assert model.n_dropped == 1 and model.nobs == N - 1
    res = model.fit()
    assert res.n_dropped == 1
    assert "Rows dropped:" in str(res.summary()) and re.search(
        r"Rows dropped:\s+1\b", str(res.summary())
    )


def test_drop_vc_rows_and_equal_to_manual_subset():
    with pytest.warns(UserWarning, match=r"dropped 6 of 24 rows .*exog_vc\[cask\]: 6"):
        model = _model(missing="drop", exog_vc=_vc(nan_row=0))
    assert model.n_dropped == 6
    keep = np.tile([False, True, True, True], 6)
    manual = _model(
        endog=DF["y"][keep],
        exog=ONES[keep],
        groups=DF["g"].to_numpy()[keep],
        exog_vc={"cask": {k: np.ones((3, 1)) for k in "abcdef"}},
    )
    np.testing.assert_allclose(_llf(model), _llf(manual), rtol=1e-12)


def test_clean_data_drops_nothing():
    model = _model(missing="drop")
    assert model.n_dropped == 0
    assert model.fit().n_dropped == 0
