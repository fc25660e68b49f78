"""Plots render to PNG (Agg) and draw exactly the data they are given: the points of each
panel are compared with the numbers they come from (ranef, residuals, profiles, fits)."""

import math
import sys
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import mixedjax  # noqa: E402
from mixedjax.display import plots  # noqa: E402


@pytest.fixture(scope="module")
def sleep():
    df = mixedjax.datasets.load("sleepstudy")
    model = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", df, groups="Subject", re_formula="~Days"
    )
    return model.fit()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _png(fig, tmp_path, name="plot.png"):
    path = tmp_path / name
    fig.savefig(path, dpi=40)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    return path


def test_caterpillar(sleep, tmp_path):
    fig = sleep.plot_caterpillar(level=0.9)
    _png(fig, tmp_path)
    ranef = sleep.ranef()
    z = NormalDist().inv_cdf(0.95)
    assert [ax.get_title() for ax in fig.axes] == ["Subject: (Intercept)", "Subject: Days"]
    for ax, term in zip(fig.axes, ["(Intercept)", "Days"], strict=True):
        block = ranef[ranef["term"] == term].sort_values("condval")
        x, y = ax.lines[0].get_data()
        np.testing.assert_allclose(x, block["condval"], rtol=1e-12)
        np.testing.assert_array_equal(y, np.arange(18))
        segments = ax.collections[0].get_segments()
        assert len(segments) == 18
        half = np.array([(s[1, 0] - s[0, 0]) / 2 for s in segments])
        np.testing.assert_allclose(half, z * block["condsd"].to_numpy(), rtol=1e-10)
        assert [t.get_text() for t in ax.get_yticklabels()] == block["grp"].tolist()


def test_caterpillar_subsamples_many_levels(sleep):
    fig = plots.caterpillar(sleep.ranef(), max_levels=5)
    x, _ = fig.axes[0].lines[0].get_data()
    values = np.sort(sleep.ranef().query("term == '(Intercept)'")["condval"].to_numpy())
    assert len(x) == 5 and x[0] == values[0] and x[-1] == values[-1]


def test_residual_plots(sleep, tmp_path):
    fig = sleep.plot_diagnostics()
    _png(fig, tmp_path)
    ax_res, ax_qq = fig.axes
    points = ax_res.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], sleep.fittedvalues, rtol=1e-12)
    np.testing.assert_allclose(points[:, 1], sleep.resid, rtol=1e-12, atol=1e-12)
    qq_points = ax_qq.collections[0].get_offsets()
    n = sleep.nobs
    assert len(qq_points) == n
    np.testing.assert_allclose(
        qq_points[:, 1], np.sort(sleep.resid) / math.sqrt(sleep.scale), rtol=1e-12
    )
    assert qq_points[0, 0] == pytest.approx(NormalDist().inv_cdf(0.5 / n), rel=1e-12)
    assert np.all(np.diff(qq_points[:, 0]) > 0)
    smooth = plots.residuals_vs_fitted(sleep, smooth=True)
    assert len(smooth.lines) == 2 and len(smooth.lines[1].get_xdata()) == 20


def test_qq_of_values(tmp_path):
    ax = plots.qq(np.arange(11.0))
    _png(ax.figure, tmp_path)
    pts = ax.collections[0].get_offsets()
    assert pts[5, 0] == pytest.approx(0.0, abs=1e-12)  # the median's normal quantile
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, 5.0 + np.std(np.arange(11.0), ddof=1) * x)


def test_profile_zeta(tmp_path):
    t = np.linspace(-3, 3, 13)
    prof = pd.concat(
        [
            pd.DataFrame({"parameter": "sigma", "value": 25 + 2 * t, "zeta": t}),
            pd.DataFrame({"parameter": "(Intercept)", "value": 250 + 7 * t, "zeta": t**3 / 9}),
        ]
    )
    fig = plots.profile_zeta(prof, level=(0.95,))
    _png(fig, tmp_path)
    assert [ax.get_title() for ax in fig.axes] == ["sigma", "(Intercept)"]
    x, y = fig.axes[1].lines[0].get_data()
    np.testing.assert_allclose(x, 250 + 7 * t)
    np.testing.assert_allclose(y, t**3 / 9)
    z95 = NormalDist().inv_cdf(0.975)
    levels = sorted(ln.get_ydata()[0] for ln in fig.axes[0].lines[1:])
    np.testing.assert_allclose(levels, [-z95, 0.0, z95])
    absolute = plots.profile_zeta(prof, level=0.95, absolute=True)
    np.testing.assert_allclose(absolute.axes[1].lines[0].get_ydata(), np.abs(t**3 / 9))
    with pytest.raises(ValueError, match="zeta"):
        plots.profile_zeta(prof.drop(columns="zeta"))


def test_trajectories(sleep, tmp_path):
    fig = sleep.plot_trajectories("Days")
    _png(fig, tmp_path)
    model = sleep.model
    assert len(fig.axes) == 18
    days = model.exog[:, 1]
    for g, ax in enumerate(fig.axes):
        rows = np.flatnonzero(model.group_codes == g)
        rows = rows[np.argsort(days[rows], kind="stable")]
        assert ax.get_title() == str(model.group_labels[g])
        np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], model.endog[rows])
        assert len(ax.lines) == 2
        np.testing.assert_allclose(ax.lines[0].get_ydata(), sleep.fittedvalues[rows])
    some = plots.trajectories(sleep, days, groups=["308", "309"], overlay=True)
    assert len(some.axes) == 1 and len(some.axes[0].lines) == 2
    with pytest.raises(ValueError, match="time"):
        plots.trajectories(sleep, "Hours")
    with pytest.raises(ValueError, match="groups"):
        plots.trajectories(sleep, "Days", groups=["nope"])


def test_bad_inputs(sleep):
    with pytest.raises(TypeError, match="ranef"):
        plots.caterpillar(pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match="level"):
        plots.caterpillar(sleep, level=1.5)


def test_missing_matplotlib_names_the_extra(monkeypatch, sleep):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"mixedjax\[plot\]"):
        sleep.plot_residuals()
