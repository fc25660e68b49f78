"""Out-of-core models (``from_chunks``) against the in-memory model.

Oracle: ``MixedLM.from_formula`` on the concatenated data; tolerance 1e-10 relative (the
only difference is the order in which per-group sums are added).
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
