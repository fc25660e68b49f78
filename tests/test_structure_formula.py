"""lme4 formula parsing, term building and the front-end errors (no fitting)."""

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.model.lme4 import lme4_design, one_factor_plan
from mixedjax.spec.lme4_formula import parse_formula


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "w": rng.normal(size=n),
            "f": rng.choice(["u", "v", "w"], n),
            "a": np.repeat(["A", "B", "C", "D"], n // 4),
            "b": np.tile(["p", "q", "r"], n // 3),
            "g": rng.integers(0, 5, n).astype(str),
            "h": rng.integers(0, 7, n).astype(str),
        }
    )


def _terms(formula, df):
    return [(t.group, t.names, t.n_levels) for t in lme4_design(formula, df)[2]]


def test_fixed_part_goes_to_formulaic(df):
    endog, exog, *_ = lme4_design("y ~ x * C(f) + I(w**2) + (1 | g)", df)
    assert list(exog.columns)[:2] == ["Intercept", "x"]
    assert "I(w ** 2)" in exog.columns and "x:C(f)[T.v]" in exog.columns
    assert endog.name == "y"


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("y ~ x + (x | g)", [("g", ("(Intercept)", "x"), 5)]),
        ("y ~ (1 | g)", [("g", ("(Intercept)",), 5)]),
        ("y ~ x + (0 + x | g)", [("g", ("x",), 5)]),
        ("y ~ x + (-1 + x | g)", [("g", ("x",), 5)]),
        ("y ~ x + (x || g)", [("g", ("(Intercept)",), 5), ("g", ("x",), 5)]),
        ("y ~ x + (1 | g) + (0 + x | g)", [("g", ("(Intercept)",), 5), ("g", ("x",), 5)]),
        ("y ~ 1 + (1 | a/b)", [("a:b", ("(Intercept)",), 12), ("a", ("(Intercept)",), 4)]),
        ("y ~ 1 + (1 | a:b)", [("a:b", ("(Intercept)",), 12)]),
        ("y ~ 1 + (1 | g) + (1 | h)", [("h", ("(Intercept)",), 7), ("g", ("(Intercept)",), 5)]),
        ("y ~ x + (x + w | h)", [("h", ("(Intercept)", "x", "w"), 7)]),
    ],
)
def test_bar_terms(df, formula, expected):
    assert _terms(formula, df) == expected


def test_interaction_levels_like_lme4(df):
    term = lme4_design("y ~ (1 | a:b)", df)[2][0]
    assert list(term.levels[:4]) == ["A:p", "A:q", "A:r", "B:p"]
    assert np.array_equal(term.levels[term.codes], (df.a + ":" + df.b).to_numpy())


def test_routing(df):
    one = lme4_design("y ~ x + (x | a) + (1 | a:b) + (0 + w | a)", df)[2]
    primary, vcs = one_factor_plan(one)
    assert primary.names == ("(Intercept)", "x") and len(vcs) == 2
    assert one_factor_plan(lme4_design("y ~ (1 | g) + (1 | h)", df)[2]) is None
    assert one_factor_plan(lme4_design("y ~ (x | a) + (0 + w + I(w**2) | a)", df)[2]) is None
    assert isinstance(mixedjax.mixedlm("y ~ (1 | a/b)", df), mixedjax.MixedLM)
    crossed = mixedjax.mixedlm("y ~ (1 | g) + (1 | h)", df)
    assert type(crossed) is mixedjax.MixedLM and crossed.engine == "crossed"
    assert mixedjax.mixedlm("y ~ (1 | a/b)", df).engine == "one-factor"


def _caret(err) -> int:
    lines = str(err.value).splitlines()
    return lines[2].index("^") - lines[1].index(lines[1].strip())


@pytest.mark.parametrize(
    "formula, column, message",
    [
        ("y ~ x + (x | )", 13, "missing grouping factor"),
        ("y ~ x + ( | g)", 10, "missing random-effects expression"),
        ("y ~ x + 1 | g", 10, "must be inside parentheses"),
        ("y ~ x + (1 | g + h)", 13, "column name"),
        ("y ~ x + (x | g", 8, "never closed"),
        ("y ~ x + (1 | g | h)", 15, "only one bar"),
        ("y ~ x - (1 | g)", 8, "only be added"),
    ],
)
def test_malformed_terms_show_a_caret(formula, column, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_formula(formula)
    assert _caret(err) == column


@pytest.mark.parametrize(
    "formula, name",
    [
        ("y ~ x + (nope | g)", "nope"),
        ("y ~ x + (1 | nope)", "nope"),
        ("y ~ nope + (1 | g)", "nope"),
        ("y ~ x + (1 | g/nope)", "nope"),
    ],
)
def test_unknown_columns_are_named(df, formula, name):
    with pytest.raises(ValueError, match=f"unknown column '{name}'") as err:
        mixedjax.mixedlm(formula, df)
    assert str(err.value).splitlines()[1].strip()[_caret(err) :].startswith(name)


def test_mixedlm_arguments(df):
    with pytest.raises(ValueError, match="groups="):
        mixedjax.mixedlm("y ~ x", df)
    with pytest.raises(ValueError, match="do not also pass"):
        mixedjax.mixedlm("y ~ x + (1 | g)", df, groups="g")
    m = mixedjax.mixedlm("y ~ x", df, groups="g", re_formula="~x")
    assert isinstance(m, mixedjax.MixedLM) and m.k_re == 2


def test_missing_values(df):
    bad = df.copy()
    bad.loc[3, "x"] = np.nan
    bad.loc[5, "g"] = None
    with pytest.raises(ValueError, match="missing"):
        lme4_design("y ~ x + (1 | g)", bad)
    with pytest.warns(UserWarning, match="dropped 2"):
        endog, _, terms, _ = lme4_design("y ~ x + (1 | g)", bad, missing="drop")
    assert len(endog) == len(df) - 2 and terms[0].codes.shape == (len(df) - 2,)


def test_valid_formulaic_arguments_are_not_mistaken_for_columns(df):
    _, exog, terms, _ = lme4_design("y ~ C(f, Treatment('w')) + (1 + C(f, Sum) | g)", df)
    assert exog.shape[1] == 3 and terms[0].q == 3
