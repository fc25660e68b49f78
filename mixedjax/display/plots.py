"""Diagnostic plots (matplotlib, the optional extra ``plot``: ``pip install 'mixedjax[plot]'``).

Every function returns the matplotlib object it drew on (a ``Figure`` for multi-panel plots,
an ``Axes`` otherwise) and takes an ``ax=`` (single panel) or ``fig=`` (multi-panel) to draw
into an existing figure. matplotlib is imported only when a plot is made.

* :func:`caterpillar`: BLUPs with conditional intervals, one panel per factor and term
  (lme4's ``dotplot(ranef(m, condVar = TRUE))``).
* :func:`residuals_vs_fitted`, :func:`qq`: residual diagnostics (conditional residuals).
* :func:`profile_zeta`: profile ``ζ`` traces, one panel per parameter (lme4's
  ``xyplot(profile(m))``), from a table of ``(parameter, value, zeta)`` rows.
* :func:`trajectories`: observed points and fitted lines per group over a time-like
  covariate (lme4's ``xyplot(y ~ t | g)`` with the fit overlaid).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "mixedjax plots need matplotlib, which is an optional extra: "
            "pip install 'mixedjax[plot]' (or pip install matplotlib)"
        ) from err
    return plt


def _grid(n_panels: int, ncols: int | None, panel_size: tuple[float, float], fig=None):
    plt = _pyplot()
    ncols = ncols or min(n_panels, 4)
    nrows = math.ceil(n_panels / ncols)
    if fig is None:
        fig = plt.figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows))
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(n_panels)]
    return fig, axes


def _ranef_frame(ranef) -> pd.DataFrame:
    frame = ranef.ranef() if hasattr(ranef, "ranef") else ranef
    required = {"grpvar", "term", "grp", "condval", "condsd"}
    if not isinstance(frame, pd.DataFrame) or not required <= set(frame.columns):
        raise TypeError(
            "caterpillar needs fit results or a DataFrame like results.ranef() with columns "
            f"{sorted(required)}"
        )
    return frame


def caterpillar(
    ranef,
    level: float = 0.95,
    *,
    max_levels: int = 500,
    ncols: int | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Caterpillar plot: each level's BLUP with its conditional interval, sorted.

    One panel per (grouping factor, term). The interval is ``condval ± z·condsd`` with
    ``z`` the normal quantile for ``level`` (lme4's conditional intervals).

    Args:
        ranef: fit results (anything with ``.ranef()``) or that DataFrame
            (``grpvar, term, grp, condval, condsd``).
        level: coverage of the intervals, in (0, 1).
        max_levels: panels with more levels show this many, evenly spaced in rank (both
            extremes included), so 100,000 groups still give a readable plot.
        ncols: panels per row (default: up to 4).
        fig: a figure to draw into.

    Returns:
        The ``Figure``; ``fig.axes[k]`` holds one point per plotted level.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> fig = caterpillar(r)            # or r.plot_caterpillar()
        >>> [ax.get_title() for ax in fig.axes]
        ['Subject: (Intercept)', 'Subject: Days']
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if max_levels < 2:
        raise ValueError(f"max_levels must be at least 2, got {max_levels!r}")
    frame = _ranef_frame(ranef)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    panels = list(frame.groupby(["grpvar", "term"], sort=False))
    fig, axes = _grid(len(panels), ncols, (3.6, 0.6 + 0.16 * min(max_levels, 40)), fig)
    for ax, ((grpvar, term), block) in zip(axes, panels, strict=True):
        block = block.sort_values("condval", kind="stable")
        n = len(block)
        if n > max_levels:
            block = block.iloc[np.unique(np.linspace(0, n - 1, max_levels).round().astype(int))]
        pos = np.arange(len(block))
        ax.errorbar(
            block["condval"].to_numpy(),
            pos,
            xerr=z * block["condsd"].to_numpy(),
            fmt="o",
            markersize=3,
            color="C0",
            ecolor="0.55",
            elinewidth=1,
        )
        ax.axvline(0.0, color="0.3", linewidth=0.8, linestyle=":")
        if len(block) <= 60:
            ax.set_yticks(pos, block["grp"].astype(str).tolist(), fontsize=7)
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{len(block)} of {n} levels, by rank")
        ax.set_title(f"{grpvar}: {term}")
        ax.set_xlabel(f"BLUP ± {level:.0%} conditional interval")
    fig.tight_layout()
    return fig


def _residuals(results) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(results.fittedvalues), np.asarray(results.resid)


def residuals_vs_fitted(results, *, ax: Axes | None = None, smooth: bool = False) -> Axes:
    """Conditional residuals ``y - Xβ̂ - Zb̂`` against fitted values, with a zero line.

    ``smooth=True`` adds a running-mean smoother (binned means over 20 quantile bins; no
    statsmodels dependency) to show curvature.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> ax = residuals_vs_fitted(r)     # or r.plot_residuals()
        >>> len(ax.collections[0].get_offsets())
        180
    """
    plt = _pyplot()
    fitted, resid = _residuals(results)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    ax.scatter(fitted, resid, s=10, alpha=0.7, color="C0")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    if smooth:
        edges = np.quantile(fitted, np.linspace(0, 1, 21))
        which = np.clip(np.searchsorted(edges, fitted, side="right") - 1, 0, 19)
        centre = np.array([fitted[which == k].mean() for k in range(20) if np.any(which == k)])
        means = np.array([resid[which == k].mean() for k in range(20) if np.any(which == k)])
        ax.plot(centre, means, color="C3", linewidth=1.2)
    ax.set_xlabel("fitted values")
    ax.set_ylabel("conditional residuals")
    ax.set_title("Residuals vs fitted")
    return ax


def qq(results_or_values, *, ax: Axes | None = None) -> Axes:
    """Normal QQ plot of standardised conditional residuals (``resid / σ̂``) or of any
    1-d array (e.g. one term's BLUPs), with the line ``y = x`` (``y = mean + sd·x`` for an
    array).

    Plotting positions ``(i - 0.5) / n`` (Hazen), theoretical quantiles from the normal
    inverse CDF.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> ax = qq(r)                      # or r.plot_qq()
        >>> ax.get_title()
        'Normal QQ'
    """
    plt = _pyplot()
    if hasattr(results_or_values, "resid"):
        values = np.asarray(results_or_values.resid) / math.sqrt(results_or_values.scale)
        centre, spread = 0.0, 1.0
        label = "standardised residuals"
    else:
        values = np.asarray(results_or_values, dtype=float).ravel()
        centre, spread = float(np.mean(values)), float(np.std(values, ddof=1))
        label = "sample quantiles"
    n = values.size
    if n < 2:
        raise ValueError("qq needs at least two values")
    dist = NormalDist()
    theory = np.array([dist.inv_cdf((i - 0.5) / n) for i in range(1, n + 1)])
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(theory, np.sort(values), s=10, color="C0")
    ends = np.array([theory[0], theory[-1]])
    ax.plot(ends, centre + spread * ends, color="C3", linewidth=1)
    ax.set_xlabel("normal quantiles")
    ax.set_ylabel(label)
    ax.set_title("Normal QQ")
    return ax


def diagnostics(results, *, fig: Figure | None = None) -> Figure:
    """Residuals vs fitted and the QQ plot side by side (a two-panel ``Figure``).

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> len(diagnostics(r).axes)
        2
    """
    plt = _pyplot()
    if fig is None:
        fig = plt.figure(figsize=(9, 3.8))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    residuals_vs_fitted(results, ax=ax1)
    qq(results, ax=ax2)
    fig.tight_layout()
    return fig


def profile_zeta(
    profile: pd.DataFrame,
    level: float | tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99),
    *,
    parameter: str = "parameter",
    value: str = "value",
    zeta: str = "zeta",
    absolute: bool = False,
    ncols: int | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Profile ``ζ`` plot: the signed square root of the likelihood-ratio statistic against
    each parameter, one panel per parameter (lme4's ``xyplot(profile(m))``).

    For a parameter ``φ`` with the others re-optimised,
    ``ζ(φ) = sign(φ - φ̂) √(d(φ) - d(φ̂))``; a straight line means a quadratic log-likelihood
    (Wald intervals are then accurate). Horizontal lines at ``±z`` mark the confidence
    levels; where the trace crosses them are the profile interval ends.

    Args:
        profile: rows ``(parameter, value, zeta)``, one trace per parameter (column names
            adjustable with the keyword arguments of the same names).
        level: confidence level(s) to mark.
        absolute: plot ``|ζ|`` (MixedModels.jl's "absolute" profile plot).
        ncols: panels per row.
        fig: a figure to draw into.

    Returns:
        The ``Figure``; ``fig.axes[k]`` holds the trace of the ``k``-th parameter as its
        first line.

    Example:
        >>> t = np.linspace(-2, 2, 9)
        >>> prof = pd.DataFrame({"parameter": "sigma", "value": 25 + 2 * t, "zeta": t})
        >>> fig = profile_zeta(prof)
        >>> fig.axes[0].get_title()
        'sigma'
    """
    missing = {parameter, value, zeta} - set(profile.columns)
    if missing:
        raise ValueError(f"profile is missing column(s) {sorted(missing)}")
    levels = (level,) if np.isscalar(level) else tuple(level)
    if not all(0 < lv < 1 for lv in levels):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    names = list(dict.fromkeys(profile[parameter]))
    fig, axes = _grid(len(names), ncols, (3.2, 3.0), fig)
    for ax, name in zip(axes, names, strict=True):
        block = profile[profile[parameter] == name].sort_values(value)
        x = block[value].to_numpy(dtype=float)
        y = block[zeta].to_numpy(dtype=float)
        ax.plot(x, np.abs(y) if absolute else y, color="C0", marker=".", markersize=3)
        for lv in levels:
            zq = NormalDist().inv_cdf(0.5 + lv / 2)
            for s in (1,) if absolute else (-1, 1):
                ax.axhline(s * zq, color="0.6", linewidth=0.6, linestyle="--")
        ax.axhline(0.0, color="0.3", linewidth=0.6)
        ax.set_title(str(name))
        ax.set_xlabel("value")
        ax.set_ylabel("|ζ|" if absolute else "ζ")
    fig.tight_layout()
    return fig


def trajectories(
    results,
    time,
    *,
    groups=None,
    max_groups: int = 24,
    overlay: bool = False,
    ncols: int | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Observed responses and fitted trajectories per group over a time-like covariate.

    The fitted line of a group is its conditional fit ``Xβ̂ + Z b̂`` (with its BLUPs); the
    dashed line is the population fit ``Xβ̂``. Small multiples, one panel per group
    (``overlay=True``: all groups in one panel, lines only).

    Args:
        results: fit results.
        time: the name of a column of the fixed-effects design (e.g. ``"Days"``) or an
            array with one value per observation used in the fit.
        groups: labels of the groups to show (default: the first ``max_groups``).
        max_groups: cap on the number of groups shown by default.
        ncols: panels per row (default: up to 6).
        fig: a figure to draw into.

    Returns:
        The ``Figure``; with small multiples each ``fig.axes[k]`` holds the group's points
        (one collection) and two lines (conditional and population fits).

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> fig = trajectories(r, "Days")   # or r.plot_trajectories("Days")
        >>> len(fig.axes)
        18
    """
    model = results.model
    if isinstance(time, str):
        if time not in model.exog_names:
            raise ValueError(
                f"time: {time!r} is not a column of the fixed-effects design "
                f"{model.exog_names}; pass the values as an array instead"
            )
        t = model.exog[:, model.exog_names.index(time)]
        t_name = time
    else:
        t = np.asarray(time, dtype=float).ravel()
        if t.shape[0] != model.nobs:
            raise ValueError(f"time has {t.shape[0]} values; the fit used {model.nobs} rows")
        t_name = getattr(time, "name", None) or "time"
    labels = np.asarray(model.group_labels)
    if groups is None:
        chosen = np.arange(min(len(labels), max_groups))
    else:
        index = {lab: k for k, lab in enumerate(labels.tolist())}
        unknown = [g for g in groups if g not in index]
        if unknown:
            raise ValueError(f"groups: unknown group label(s) {unknown[:5]}")
        chosen = np.array([index[g] for g in groups], dtype=int)
    y = np.asarray(model.endog)
    fitted = np.asarray(results.fittedvalues)
    population = model.exog @ np.asarray(results.fe_params)
    codes = np.asarray(model.group_codes)
    plt = _pyplot()
    if overlay:
        if fig is None:
            fig = plt.figure(figsize=(6, 4))
        ax = fig.add_subplot(1, 1, 1)
        for g in chosen:
            rows = np.flatnonzero(codes == g)
            order = rows[np.argsort(t[rows], kind="stable")]
            ax.plot(t[order], fitted[order], linewidth=1, alpha=0.8)
        ax.set_xlabel(t_name)
        ax.set_ylabel(model.endog_names)
        fig.tight_layout()
        return fig
    fig, axes = _grid(len(chosen), ncols or min(len(chosen), 6), (2.2, 2.0), fig)
    for ax, g in zip(axes, chosen, strict=True):
        rows = np.flatnonzero(codes == g)
        order = rows[np.argsort(t[rows], kind="stable")]
        ax.scatter(t[order], y[order], s=8, color="C0")
        ax.plot(t[order], fitted[order], color="C3", linewidth=1.2)
        ax.plot(t[order], population[order], color="0.5", linewidth=0.8, linestyle="--")
        ax.set_title(str(labels[g]), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.supxlabel(t_name)
    fig.supylabel(model.endog_names)
    fig.tight_layout()
    return fig
