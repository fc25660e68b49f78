"""Out-of-core models (``from_chunks``) against the in-memory model.

Oracle: ``MixedLM.from_formula`` (or ``mixedlm`` for lme4 formulas) on the concatenated
data; cross-products to 1e-12 relative and the log-likelihood to 1e-10 (the only difference
is the order in which the sums are added), estimates to 1e-7 (the same optimum, reached
through different rounding).
"""

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.model.chunked import from_chunks


def _chunks(df, size, seed=0):
    rows = np.random.default_rng(seed).permutation(len(df))  # groups split across chunks
    shuffled = df.iloc[rows]
    return (shuffled.iloc[i : i + size] for i in range(0, len(df), size))


@pytest.fixture(scope="module")
def sleep():
    return mixedjax.datasets.load("sleepstudy")


def test_chunked_fit_equals_in_memory(sleep):
    memory = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", sleep, groups="Subject", re_formula="~Days"
    )
    chunked = from_chunks(_chunks(sleep, 37), "Reaction ~ Days", "Subject", re_formula="~Days")
    assert chunked.nobs == memory.nobs and chunked.n_groups == memory.n_groups
    assert list(chunked.group_labels) == list(memory.group_labels)
    np.testing.assert_array_equal(chunked.group_sizes, memory.group_sizes)
    for name, a, b in zip(chunked.data._fields, chunked.data, memory.data, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-10, err_msg=name)
    a, b = chunked.fit(), memory.fit()
    for name in ("fe_params", "bse_fe", "cov_re", "bse_re"):
        # in-memory fits run on internally rescaled data, chunked ones on the data as given:
        # the same optimum, reached through different rounding
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-8, err_msg=name)
    np.testing.assert_allclose(a.scale, b.scale, rtol=1e-8)
    np.testing.assert_allclose(a.llf, b.llf, rtol=1e-10)
    pd.testing.assert_frame_equal(a.ranef(), b.ranef(), rtol=1e-9)
    with pytest.raises(ValueError, match="built from chunks"):
        a.fittedvalues  # noqa: B018


def test_chunked_categorical_and_missing(sleep, capsys):
    df = sleep.copy()
    df["period"] = np.where(df["Days"] < 5, "early", "late")
    df.loc[[3, 50], "Reaction"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows"):
        memory = mixedjax.MixedLM.from_formula(
            "Reaction ~ Days + C(period)", df, groups="Subject", missing="drop"
        )
    chunks = [df.iloc[:90], df.iloc[90:]]  # the first chunk sees both levels
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows"):
        chunked = from_chunks(
            chunks, "Reaction ~ Days + C(period)", "Subject", missing="drop", progress=True
        )
    err = capsys.readouterr().err
    assert "reading: 180 rows done [" in err and err.rstrip().endswith("chunks=2, groups=18")
    assert chunked.n_dropped == 2 and chunked.exog_names == memory.exog_names
    np.testing.assert_allclose(chunked.fit().llf, memory.fit().llf, rtol=1e-10)


def test_chunked_errors(sleep):
    with pytest.raises(ValueError, match="missing='drop'"):
        bad = sleep.copy()
        bad.loc[5, "Days"] = np.nan
        from_chunks([bad], "Reaction ~ Days", "Subject")
    with pytest.raises(ValueError, match="groups: column 'nope'"):
        from_chunks([sleep], "Reaction ~ Days", "nope")
    with pytest.raises(ValueError, match="no rows"):
        from_chunks([], "Reaction ~ Days", "Subject")
    df = sleep.assign(period=np.where(sleep["Days"] < 5, "early", "late"))
    with pytest.raises(ValueError, match="first chunk"):  # a level unseen in the first chunk
        from_chunks(
            [df[df["period"] == "early"], df[df["period"] == "late"]],
            "Reaction ~ C(period)",
            "Subject",
        )


def test_peak_memory_does_not_grow_with_rows():
    """Reading 10x more chunks (same size, same groups) does not raise peak memory."""
    import tracemalloc

    def generate(n_chunks, rows=20_000, n_groups=500):
        rng = np.random.default_rng(3)
        for _ in range(n_chunks):
            g = rng.integers(0, n_groups, rows)
            x = rng.normal(size=rows)
            yield pd.DataFrame({"y": x + rng.normal(size=rows) + g % 7, "x": x, "g": g})

    peaks = []
    from_chunks(generate(2), "y ~ x", "g", re_formula="~x")  # warm caches outside the trace
    for n_chunks in (3, 30):
        tracemalloc.start()
        model = from_chunks(generate(n_chunks), "y ~ x", "g", re_formula="~x")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert model.nobs == n_chunks * 20_000
    # Keeping the rows would add 27 chunks x 480 kB = 13 MB; allow half of that for the
    # allocator's and formulaic's noise (seen: up to 3 MB).
    chunk_bytes = 20_000 * 3 * 8
    assert peaks[1] < peaks[0] + 27 * chunk_bytes / 2, peaks


# ------------------------------------------------------------- lme4 formulas (crossed engine)
def _crossed_frame(seed=3, n=900):
    """Crossed slopes, a nested factor, numeric level labels (2 < 10 as numbers, not as
    strings) and a categorical fixed effect."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 30, n)
    b = rng.integers(0, 12, n) * 5  # numeric labels 0, 5, ..., 55
    df = pd.DataFrame(
        {"a": a.astype(str), "b": b, "c": rng.integers(0, 3, n), "x": rng.normal(size=n)}
    )
    df["f"] = np.where(rng.random(n) < 0.5, "lo", "hi")
    ua, ub = rng.normal(size=(30, 2)), rng.normal(size=(60, 2))
    df["y"] = (1 + ua[a, 0] + ub[b, 0] + (0.5 + ua[a, 1] + 0.3 * ub[b, 1]) * df.x
               + 0.4 * (df.f == "hi") + 0.3 * rng.normal(size=n))  # fmt: skip
    return df


CROSSED_CASES = {
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", None, 25),
    "slopes_nested": ("y ~ x + C(f) + (x | a) + (x || b) + (1 | b:c)", _crossed_frame, 97),
}


@pytest.mark.parametrize(
    "case",
    # slopes_nested: ~35 s of compiles, in the slow run
    ["penicillin", pytest.param("slopes_nested", marks=pytest.mark.slow)],
)
def test_chunked_lme4_formula_equals_in_memory(case):
    formula, make, size = CROSSED_CASES[case]
    df = mixedjax.datasets.load("penicillin") if make is None else make()
    memory = mixedjax.mixedlm(formula, df)
    assert memory.engine == "crossed"
    chunked = from_chunks(_chunks(df, size, seed=1), formula)
    assert chunked.engine == "crossed" and chunked.nobs == memory.nobs
    assert [(t.group, t.names) for t in chunked.terms] == [(t.group, t.names) for t in memory.terms]
    for t, u in zip(chunked.terms, memory.terms, strict=True):
        np.testing.assert_array_equal(t.levels, u.levels)  # the same sorted level order
    assert chunked.structure == memory.structure
    for name, a, b in zip(chunked.data._fields, chunked.data, memory.data, strict=True):
        for x, z in zip(*((a, b) if isinstance(a, tuple) else ((a,), (b,))), strict=True):
            np.testing.assert_allclose(x, z, rtol=1e-12, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(chunked.default_theta(), memory.default_theta(), rtol=1e-10)
    a, b = chunked.fit(), memory.fit()
    np.testing.assert_allclose(a.llf, b.llf, rtol=1e-10)
    np.testing.assert_allclose(a.fe_params, b.fe_params, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.bse_fe, b.bse_fe, rtol=1e-7)
    pd.testing.assert_frame_equal(a.varcorr(), b.varcorr(), rtol=1e-6)
    pd.testing.assert_frame_equal(a.ranef(), b.ranef(), rtol=1e-6, atol=1e-8)
    assert "Groups:" in str(a.summary())
    with pytest.raises(ValueError, match="built from chunks"):
        a.fittedvalues  # noqa: B018
    with pytest.raises(ValueError, match="built from chunks"):
        chunked.fit_many(np.zeros((chunked.nobs, 2)))


def test_chunked_lme4_one_factor_formula(sleep):
    """A one-factor lme4 formula read in chunks runs on the crossed engine: lme4's numbers
    all the same (the in-memory model runs on the one-factor engine)."""
    formula = "Reaction ~ Days + (Days | Subject)"
    a = from_chunks(_chunks(sleep, 50), formula).fit()
    b = mixedjax.mixedlm(formula, sleep).fit()
    assert a.model.engine == "crossed" and b.model.engine == "one-factor"
    np.testing.assert_allclose(a.llf, b.llf, rtol=1e-10)
    np.testing.assert_allclose(a.fe_params, b.fe_params, rtol=1e-7)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-5)
    pd.testing.assert_frame_equal(a.varcorr(), b.varcorr(), rtol=1e-6)


def test_chunked_lme4_formula_missing_and_errors():
    df = _crossed_frame(n=300)
    df.loc[[5, 17, 200], "x"] = np.nan
    formula = "y ~ x + (1 | a) + (1 | b)"
    with pytest.warns(UserWarning, match="dropped 3 of 300 rows"):
        memory = mixedjax.mixedlm(formula, df, missing="drop")
    with pytest.warns(UserWarning, match="dropped 3 of 300 rows"):
        chunked = from_chunks(_chunks(df, 70), formula, missing="drop")
    assert chunked.n_dropped == 3 and chunked.nobs == memory.nobs == 297
    np.testing.assert_allclose(chunked.fit().llf, memory.fit().llf, rtol=1e-10)
    with pytest.raises(ValueError, match=r"chunk \d+: \d+ row\(s\) with NaN"):
        from_chunks(_chunks(df, 70), formula)
    with pytest.raises(ValueError, match="offset"):
        from_chunks(_chunks(df, 70), "y ~ x + offset(x) + (1 | a)")
    with pytest.raises(ValueError, match="groups=... .*or lme4"):
        from_chunks(_chunks(df, 70), "y ~ x")
    one_level = df.assign(g="same")
    with pytest.raises(ValueError, match="'g' has 1 level"):
        from_chunks(_chunks(one_level, 70), "y ~ x + (1 | a) + (1 | g)", missing="drop")
