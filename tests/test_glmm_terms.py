"""The GLMM engine for several grouping factors (``mixedjax.engines.laplace_terms``).

Oracles:
* a dense NumPy Laplace approximation on a tiny crossed problem (``Z`` as a dense matrix,
  the mode by Newton's method or SciPy), to 1e-9 (canonical link) / 1e-7 (probit, whose mode
  SciPy finds less tightly);
* central finite differences of the deviance, for its autodiff gradient (1e-6 relative);
* the one-factor engine (``mixedjax.engines.laplace``) on a one-factor model, to 1e-10;
* lme4 ``glmer`` fits (``tests/reference/glmm_*``, tight control): the deviance at lme4's
  optimum equals ``-2 logLik`` to 1e-8 (lme4's modes stop at its PIRLS tolerance); our
  fits reach a log-likelihood not lower than lme4's by more than 1e-6 relative, fixed
  effects within 5e-3 of their SE, SEs and ``θ`` within 5e-3 relative (the issue's pass
  criteria).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special

from mixedjax.core.families import Binomial, Poisson
from mixedjax.design.crossed import CrossedStructure
from mixedjax.engines import laplace_terms
from mixedjax.fit.glmm_terms import deviance, fit_glmm_terms, lme4_start
from mixedjax.model.lme4 import lme4_design

REFERENCE = pathlib.Path(__file__).parent / "reference"
FAMILIES = {"binomial": Binomial(), "poisson": Poisson()}


# ----------------------------------------------------------------------------- helpers
def _tiny(seed=0):
    """24 rows, factors of 3 and 4 levels crossed, one covariate."""
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(3), 8)
    b = np.tile(np.arange(4), 6)
    x = rng.normal(size=24)
    X = np.column_stack([np.ones(24), x])
    st = CrossedStructure(q=(1, 1), n_levels=(3, 4), p=2)
    Z = np.zeros((24, 7))
    Z[np.arange(24), a] = 1.0
    Z[np.arange(24), 3 + b] = 1.0
    return a, b, x, X, Z, st


def _dense_laplace(y, X, Z, lam, beta, family):
    """``f(û) + log|Λ'Z'WZΛ + I|`` with dense ``Z`` (``lam``: the diagonal of ``Λ``)."""
    ZL = Z * lam

    def f(u):
        eta = X @ beta + ZL @ u
        return -2.0 * np.sum(np.asarray(family.loglik(y, eta, np.ones_like(y)))) + u @ u

    if family.name == "poisson":  # canonical: Newton on the analytic gradient and Hessian
        u = np.zeros(Z.shape[1])
        for _ in range(50):
            mu = np.exp(X @ beta + ZL @ u)
            g = -2 * ZL.T @ (y - mu) + 2 * u
            H = 2 * ZL.T @ (mu[:, None] * ZL) + 2 * np.eye(u.size)
            u = u - np.linalg.solve(H, g)
        W = np.exp(X @ beta + ZL @ u)
    else:  # probit: SciPy's BFGS on f, then Fisher weights at the mode
        u = optimize.minimize(f, np.zeros(Z.shape[1]), method="BFGS", tol=1e-12).x
        eta = X @ beta + ZL @ u
        mu = special.ndtr(eta)
        W = np.exp(-(eta**2)) / (2 * np.pi) / (mu * (1 - mu))
    M = ZL.T @ (W[:, None] * ZL) + np.eye(u.size)
    return f(u) + np.linalg.slogdet(M)[1]


def _reference_case(name, formula=None, weights=None):
    """``(reference, family, structure, TermRows, [(group, names, levels)])`` of an lme4
    reference case (``formula``/``weights``: a spelling of it without ``cbind``)."""
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    df = pd.read_csv(REFERENCE / ref["data"])
    for column in ref["factors"]:
        df[column] = df[column].astype(str)
    design = lme4_design(formula or ref["lme4_formula"], df)
    terms = design.terms
    st = CrossedStructure(
        tuple(t.q for t in terms), tuple(t.n_levels for t in terms), design.exog.shape[1]
    )
    n = len(df)
    w = np.ones(n) if weights is None else df[weights].to_numpy(float)
    rows = laplace_terms.term_rows(
        design.endog.to_numpy(float), w, np.zeros(n), design.exog.to_numpy(float),
        [t.design for t in terms], [t.codes for t in terms], st,
    )  # fmt: skip
    rows = jax.device_put(rows)
    return ref, FAMILIES[ref["family"]], st, rows, [(t.group, t.names, t.levels) for t in terms]


# ----------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("family", [Poisson(), Binomial(link="probit")], ids=["poisson", "probit"])
def test_laplace_deviance_equals_dense_oracle(family):
    a, b, x, X, Z, st = _tiny()
    rng = np.random.default_rng(1)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.7, 3)[a] + rng.normal(0, 0.5, 4)[b]
    if family.name == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(24) < special.ndtr(eta)).astype(float)
    rows = laplace_terms.term_rows(y, np.ones(24), np.zeros(24), X, [np.ones((24, 1))] * 2,
                                   [a, b], st)  # fmt: skip
    theta, beta = np.array([0.8, 0.6]), np.array([0.2, 0.4])
    got = float(laplace_terms.laplace_deviance(jnp.asarray(theta), jnp.asarray(beta), rows,
                                               family, st))  # fmt: skip
    lam = np.r_[np.full(3, theta[0]), np.full(4, theta[1])]
    expected = _dense_laplace(y, X, Z, lam, beta, family)
    tol = 1e-9 if family.name == "poisson" else 1e-7
    np.testing.assert_allclose(got, expected, rtol=tol)

    # the autodiff gradient in (θ, β) against central differences
    x0 = np.r_[theta, beta]
    value_and_grad = jax.jit(jax.value_and_grad(lambda v: deviance(v, rows, family, st)))
    _, grad = value_and_grad(jnp.asarray(x0))
    h = 1e-5
    fd = [
        (float(value_and_grad(jnp.asarray(x0 + h * e))[0])
         - float(value_and_grad(jnp.asarray(x0 - h * e))[0])) / (2 * h)
        for e in np.eye(x0.size)
    ]  # fmt: skip
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # ~30 s: both GLMM engines compiled
def test_one_factor_model_equals_the_one_factor_engine():
    from mixedjax.core.covariance import CovStructure
    from mixedjax.engines import laplace
    from mixedjax.engines.laplace_rows import group_rows

    ref, family, st, rows, _ = _reference_case(
        "glmm_cbpp_laplace", "prop ~ period + (1 | herd)", weights="size"
    )
    codes = np.asarray(rows.columns[0][:, 0])  # one term, q = 1: the column is the level
    grouped, _ = group_rows(
        np.asarray(rows.y), np.asarray(rows.weights), np.zeros(codes.size), np.asarray(rows.X),
        np.ones((codes.size, 1)), codes, st.n_levels[0],
    )  # fmt: skip
    x = jnp.asarray(ref["theta"] + ref["fixed"]["estimate"])

    def one_factor(v):
        return laplace.laplace_deviance(v[:1], v[1:], grouped, family, CovStructure(1))

    a, ga = jax.value_and_grad(lambda v: deviance(v, rows, family, st))(x)
    b, gb = jax.value_and_grad(one_factor)(x)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(float(a), ref["minus2loglik"], rtol=1e-9)


@pytest.mark.parametrize("name", ["glmm_crossed_binary", "glmm_grouse_nested"])
def test_deviance_at_lme4_optimum_is_minus_two_loglik(name):
    ref, family, st, rows, _ = _reference_case(name)
    x = jnp.asarray(ref["theta"] + ref["fixed"]["estimate"])
    value = float(jax.jit(lambda v: deviance(v, rows, family, st))(x))
    # 1e-8: lme4's conditional modes stop at its PIRLS tolerance (grouseticks: ours give a
    # deviance 3e-9 relative lower at lme4's printed estimates)
    np.testing.assert_allclose(value, ref["minus2loglik"], rtol=1e-8)


# ----------------------------------------------------------------------------- fits
def _check_fit_against_lme4(name):
    ref, family, st, rows, terms = _reference_case(name)
    out = fit_glmm_terms(lme4_start(st), jnp.zeros(st.p), rows, family=family, structure=st)
    assert int(out.opt.status) == 0
    x = np.asarray(out.opt.x)
    theta, beta = x[: st.n_theta], x[st.n_theta :]
    loglik = -0.5 * float(out.opt.value)
    assert loglik >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
    se_ref = np.asarray(ref["fixed"]["se"])
    np.testing.assert_array_less(np.abs(beta - ref["fixed"]["estimate"]), 5e-3 * se_ref)
    se = np.sqrt(np.diag(2 * np.linalg.inv(np.asarray(out.hessian))))[st.n_theta :]
    np.testing.assert_allclose(se, se_ref, rtol=5e-3)
    np.testing.assert_allclose(theta, ref["theta"], rtol=5e-3, atol=1e-6)
    # conditional modes and SDs of every term against lme4's ranef(condVar = TRUE)
    for (group, names, levels), values, cov in zip(
        terms, out.random_effects, out.cond_cov, strict=True
    ):
        blups = next(b for b in ref["ranef"] if b["group"] == group)
        for j, name in enumerate(names):
            pick = np.asarray(blups["term"]) == name
            by_level = dict(zip(np.asarray(blups["level"])[pick], range(pick.sum()), strict=True))
            order = [by_level[level] for level in levels]
            np.testing.assert_allclose(
                np.asarray(values)[:, j], np.asarray(blups["value"])[pick][order], atol=5e-4
            )
            np.testing.assert_allclose(
                np.sqrt(np.asarray(cov)[:, j, j]),
                np.asarray(blups["cond_sd"])[pick][order],
                rtol=5e-3,
            )


def test_crossed_binary_fit_matches_lme4():
    _check_fit_against_lme4("glmm_crossed_binary")


@pytest.mark.slow  # two more compilations of the fit program (~20 s each)
@pytest.mark.parametrize("name", ["glmm_grouse_nested", "glmm_verbagg_crossed"])
def test_reference_fits_match_lme4(name):
    _check_fit_against_lme4(name)


def test_too_many_random_effects_is_a_clear_error():
    st = CrossedStructure(q=(1, 1), n_levels=(5000, 2000), p=1)
    with pytest.raises(ValueError, match="7000 random effects"):
        laplace_terms.term_rows(np.zeros(2), np.ones(2), np.zeros(2), np.ones((2, 1)),
                                [np.ones((2, 1))] * 2, [np.zeros(2, int)] * 2, st)  # fmt: skip


# ----------------------------------------------------------------------------- front end
def test_glmer_on_crossed_factors_matches_lme4():
    """``mixedjax.glmer`` routes several grouping factors to this engine; the results
    (summary, varcorr, ranef, predict with a new level) follow."""
    import mixedjax

    ref = json.loads((REFERENCE / "glmm_crossed_binary.json").read_text())
    df = pd.read_csv(REFERENCE / ref["data"])
    model = mixedjax.glmer(ref["lme4_formula"], df, family="binomial")
    assert model.engine == "crossed"
    fit = model.fit()
    from mixedjax.results.glmm import MixedGLMResults

    assert isinstance(fit, MixedGLMResults) and fit.converged
    assert fit.is_singular == ref["singular"]
    assert fit.llf >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
    se = np.asarray(ref["fixed"]["se"])
    np.testing.assert_array_less(np.abs(fit.fe_params - ref["fixed"]["estimate"]), 5e-3 * se)
    np.testing.assert_allclose(fit.bse_fe, se, rtol=5e-3)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=5e-3, atol=1e-6)
    np.testing.assert_allclose(fit.aic, ref["aic"], rtol=1e-8)
    np.testing.assert_allclose(fit.deviance, ref["deviance"], rtol=1e-5)
    vc = fit.varcorr()
    subj = ref["random"][0]
    assert subj["group"] == "subj"
    np.testing.assert_allclose(
        vc[(vc.group == "subj") & vc.var2.isna()]["vcov"], np.diag(subj["cov"]), rtol=1e-2
    )
    ranef = fit.ranef()
    assert set(ranef["grpvar"]) == {"subj", "item"} and len(ranef) == 40 * 2 + 15
    np.testing.assert_allclose(fit.fittedvalues[:20], ref["fitted_head"], atol=1e-4)
    text = str(fit.summary())
    assert "subj, item" in text and "Laplace" in text
    new = df.iloc[:2].assign(subj=["unseen", df.subj.iloc[1]])
    eta = fit.predict(new, type="link")
    eta_population = fit.predict(new, type="link", re_form=None)
    item = fit.random_effects["item"].loc[new.item.iloc[0], "(Intercept)"]
    np.testing.assert_allclose(eta[0], eta_population[0] + item, rtol=1e-12)  # subject at 0
    with pytest.raises(ValueError, match="nAGQ = 5"):
        mixedjax.glmer(ref["lme4_formula"], df, family="binomial", nAGQ=5)
