"""Size classes: one compiled program per engine and size class; padding changes no number.

Builds (compilations and loads from the persistent cache alike) are counted with JAX's
``/jax/core/compile/backend_compile_duration`` event, which fires once per executable JAX
builds, whatever its origin (mixedjax's kernels, eager ``jnp`` operations, copies).
"""

import contextlib

import jax
import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.design import sizeclass
from mixedjax.fit import conditioning, estimation
from mixedjax.fit.program import run_fit

BUILD = "/jax/core/compile/backend_compile_duration"


_ACTIVE: list[list[str]] = []


def _listener(event, duration, **kwargs):
    if event == BUILD:
        for built in _ACTIVE:
            built.append(kwargs.get("fun_name", "?"))


jax.monitoring.register_event_duration_secs_listener(_listener)  # once per process


@contextlib.contextmanager
def count_builds():
    """Yields a list that collects the name of every executable built inside the block."""
    built: list[str] = []
    _ACTIVE.append(built)
    try:
        yield built
    finally:
        _ACTIVE.remove(built)


def _everyday(result):
    """What a user reads after a fit (none of it may build a program)."""
    str(result.summary())
    result.varcorr()
    read = (result.bse, result.random_effects, result.llf, result.aic, result.bic)
    assert all(x is not None for x in read) and result.cov_params() is not None


SLEEP = "Reaction ~ Days + (Days | Subject)"


def _sleep_subset(n_subjects):
    df = mixedjax.datasets.load("sleepstudy")
    return df[df["Subject"].isin(np.sort(df["Subject"].unique())[:n_subjects])]


def _three_effects(n_groups=20, rows=12, seed=7):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rows)
    x1, x2 = rng.standard_normal((2, g.size))
    b = rng.standard_normal((n_groups, 3)) * [1.0, 0.7, 0.5]
    y = (
        1
        + 0.5 * x1
        - 0.3 * x2
        + b[g, 0]
        + b[g, 1] * x1
        + b[g, 2] * x2
        + rng.standard_normal(g.size)
    )
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def test_the_kinds_of_small_models_share_programs():
    """Each fit builds at most one program (its class's, if no earlier fit built it); a
    fit in a class seen before builds nothing, whatever its data, covariance pattern or
    REML/ML; the everyday results build nothing."""
    load = mixedjax.datasets.load
    sleep, orth, pen = load("sleepstudy"), load("orthodont"), load("penicillin")
    crossed = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    # (what, lme4 formula, data, REML, size class); the statsmodels spelling comes after
    lme4_session = [
        ("slopes", SLEEP, sleep, True, "onefactor 2-2"),
        ("ML refit", SLEEP, sleep, False, "onefactor 2-2"),
        ("other data", SLEEP, _sleep_subset(10), True, "onefactor 2-2"),
        ("diagonal ||", "Reaction ~ Days + (Days || Subject)", sleep, True, "onefactor 2-2"),
        ("intercept", "Yield ~ 1 + (1 | Batch)", load("dyestuff"), True, "onefactor 1-1"),
        ("three correlated", "y ~ x1 + x2 + (1 + x1 + x2 | g)", _three_effects(), True, "4-4"),
        ("nested", "strength ~ 1 + (1 | batch/cask)", load("pastes"), True, "nested pastes"),
        ("factor, p=3", "distance ~ age + Sex + (1 | Subject)", orth, True, "onefactor 4-1"),
        ("factor, p=4", "distance ~ age * Sex + (1 | Subject)", orth, True, "onefactor 4-1"),
        ("crossed", crossed, pen, True, "crossed penicillin"),
        ("crossed ML", crossed, pen, False, "crossed penicillin"),
    ]
    session = [
        (what, lambda f=formula, d=data, reml=reml: mixedjax.mixedlm(f, d).fit(reml=reml), size)
        for what, formula, data, reml, size in lme4_session
    ]
    statsmodels_spelling = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", sleep, groups="Subject", re_formula="~Days"
    )
    session.append(("statsmodels formula", statsmodels_spelling.fit, "onefactor 2-2"))
    seen = set()
    for label, fit, size in session:
        with count_builds() as built:
            result = fit()
        assert len(built) <= (0 if size in seen else 1), (label, built)
        seen.add(size)
        with count_builds() as built:
            _everyday(result)
        assert built == [], (label, built)


def test_df_programs_are_shared_by_a_size_class():
    """Satterthwaite's df (``coef_table``) run one program per size class: after one
    model's table, another model of the class (other data, other pattern) builds nothing."""
    sleep = mixedjax.datasets.load("sleepstudy")
    mixedjax.mixedlm(SLEEP, sleep).fit().coef_table()
    other = mixedjax.mixedlm("Reaction ~ Days + (Days || Subject)", _sleep_subset(12))
    with count_builds() as built:
        table = other.fit(reml=False).coef_table()
    assert built == []
    assert np.all(np.isfinite(table["df"].to_numpy()))


def test_refit_and_summary_build_nothing():
    model = mixedjax.mixedlm(SLEEP, mixedjax.datasets.load("sleepstudy"))
    first = model.fit()
    _everyday(first)
    with count_builds() as built:
        again = model.fit()
        _everyday(again)
        model.fit(reml=False)
    assert built == []
    assert again.llf == first.llf


@pytest.mark.parametrize(
    "formula, reml",
    [
        (SLEEP, True),
        pytest.param("Reaction ~ Days + (Days || Subject)", False, marks=pytest.mark.slow),
        pytest.param("Reaction ~ Days + (1 | Subject)", True, marks=pytest.mark.slow),
    ],
)
def test_padded_program_equals_the_exact_kernels(formula, reml):
    """The size class's program (padded groups, fixed and random effects; pattern and
    REML as data) gives the exact-shape kernels' numbers to rounding."""
    model = mixedjax.mixedlm(formula, mixedjax.datasets.load("sleepstudy"))
    std = model._standardized(center_re=True)
    s = model.structure
    theta0 = estimation.start_values(std.data, s)
    free = np.ones(s.n_theta, bool)
    run = run_fit(std.data, s, theta0, free, reml, 1e-9, "lbfgs", 500)
    exact = estimation.fit_theta(theta0, free, std.data, 1e-9, structure=s, reml=reml)
    theta, value, _ = estimation.snap_to_boundary(
        np.asarray(exact.x), float(exact.value), free, std.data, s, reml
    )
    est = estimation.estimates_at(theta, std.data, structure=s, reml=reml)
    np.testing.assert_allclose(run.theta_std, theta, rtol=1e-6, atol=1e-8)
    assert abs(run.value_std - value) <= 1e-9 * abs(value)
    for name in ("beta", "cov_beta", "blups", "cond_cov"):
        np.testing.assert_allclose(
            getattr(run.estimates_std, name), getattr(est, name), rtol=1e-5, atol=1e-8,
            err_msg=name,
        )  # fmt: skip
    # The information the program returns is the standalone kernel's.
    result = model.fit(reml=reml)
    standalone = conditioning.variance_parameter_cov(model, result._phi, reml)
    np.testing.assert_allclose(result._cov_user, standalone, rtol=1e-6, atol=1e-12)


def test_size_class_rules():
    assert tuple(sizeclass.size_class(5, 1, 1)) == (256, 1, 1)
    assert tuple(sizeclass.size_class(300, 5, 3)) == (384, 8, 4)
    assert tuple(sizeclass.size_class(5000, 5, 3)) == (6144, 5, 3)  # large: exact p, r
    with pytest.raises(ValueError, match="does not fit"):
        d = mixedjax.mixedlm(SLEEP, mixedjax.datasets.load("sleepstudy")).data
        sizeclass.pad_crossprods(d, sizeclass.SizeClass(8, 2, 2))
