"""Random-effects structures the data cannot identify: clear errors or warnings."""

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.design import crossed as crossed_data


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(1)
    n = 40
    g = np.repeat(np.arange(8), 5).astype(str)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "g": g,
            "h": rng.integers(0, 6, n).astype(str),
            "gx": np.repeat(rng.normal(size=8), 5),  # constant within g
            "one": "all",
            "id": np.arange(n).astype(str),
        }
    )


def test_factor_with_one_level(df):
    with pytest.raises(ValueError, match=r"'one' has 1 level\(s\).*not identifiable"):
        mixedjax.mixedlm("y ~ x + (1 | one)", df)


def test_statsmodels_component_with_one_level(df):
    with pytest.raises(ValueError, match=r"'c' has 1 level\(s\).*not identifiable"):
        mixedjax.mixedlm("y ~ x", df, groups="one", vc_formula={"c": "0 + C(one)", "g": "0 + C(g)"})


def test_slope_constant_within_groups(df):
    with pytest.warns(UserWarning, match="'gx' does not vary within levels of 'g'"):
        mixedjax.mixedlm("y ~ x + (gx | g)", df)
    with pytest.warns(UserWarning, match="does not vary within"):
        mixedjax.mixedlm("y ~ x + (1 | g) + (0 + gx | g)", df)


@pytest.mark.parametrize("formula", ["y ~ (1 | g/g)", "y ~ (1 | g:g)", "y ~ (1 | g/h/g)"])
def test_factor_nested_in_itself(df, formula):
    with pytest.raises(ValueError, match="'g' is nested in itself: it is not identifiable"):
        mixedjax.mixedlm(formula, df)


def test_as_many_random_effects_as_observations(df):
    with pytest.raises(ValueError, match=r"40 random effects for 40 observations"):
        mixedjax.mixedlm("y ~ x + (1 | id)", df)
    with pytest.raises(ValueError, match=r"48 random effects for 40 observations"):
        mixedjax.mixedlm("y ~ (x + gx + x:gx + 1 + I(x**2) + I(x**3) | g)", df.assign(g=df.g))


def test_more_random_effects_than_observations_in_total(df):
    n_gh = (df.g + ":" + df.h).nunique()
    assert n_gh < 40
    with pytest.warns(UserWarning, match=f"{16 + 12 + n_gh} random effects for 40 observations"):
        mixedjax.mixedlm("y ~ (x | g) + (x | h) + (1 | g:h)", df)


def test_dense_block_too_large_is_reported_before_building(df, monkeypatch):
    monkeypatch.setattr(crossed_data, "available_memory", lambda: 10_000)
    with pytest.raises(ValueError, match=r"need about .* GiB \(\d+ bytes: a dense 9 x 9"):
        mixedjax.mixedlm("y ~ x + (1 | g) + (1 | h)", df)


@pytest.mark.parametrize("formula", ["y ~ (1 | g) + (1 | g)", "y ~ (x | g) + (0 + x | g)"])
def test_same_random_effect_twice(df, formula):
    with pytest.raises(ValueError, match="appears in two terms on 'g'.*not separately"):
        mixedjax.mixedlm(formula, df)
