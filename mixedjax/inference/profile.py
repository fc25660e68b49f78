"""Profile likelihood: signed-root deviance traces and profile confidence intervals.

As lme4's ``profile.merMod`` (which always profiles the **ML** deviance, refitting a REML
fit by ML first), the variance parameters are profiled on lme4's "sdcor" scale

.. math::
    ψ = (\\text{sd and correlations of each term, column-wise lower triangle},
         \\; \\text{sd of each variance component}, \\; σ),

and for a parameter ``ψ_k`` (or a fixed effect ``β_j``)

.. math::
    ζ(c) = \\operatorname{sign}(c - \\hat ψ_k) \\sqrt{\\min_{ψ_k = c} d(ψ) - d(\\hat ψ)},

with ``d`` the ML deviance (β profiled out). The ``1-α`` interval is ``{c : |ζ(c)| ≤ z_{1-α/2}}``;
its ends are found by a secant/regula-falsi root finder on ``ζ`` (on the log scale for
standard deviations, the atanh scale for correlations), each evaluation being one jitted,
constrained refit: the free coordinates are optimised by the core optimiser
(:func:`mixedjax.fit.optimize.minimize` with a free mask) in unconstrained coordinates
(``sd = e^u``, ``cor = tanh u``). A fixed effect is profiled by moving ``β_j x_j`` into the
response, which only changes the cross-products (``Zty``, ``Xty``, ``yty``), and refitting θ.
Traces for plotting evaluate ``ζ`` on a grid in one ``vmap``-ed batch of refits.
"""

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure, lower_indices_colwise
from mixedjax.core.distributions import norm_ppf
from mixedjax.core.progress import progress as progress_bar
from mixedjax.design.crossed import CrossedData, CrossedStructure
from mixedjax.design.groups import GroupedData
from mixedjax.fit import estimation
from mixedjax.fit.optimize import minimize
from mixedjax.inference.ddf import deviance_varpar

SD, COR = 0, 1


# ----------------------------------------------------------------- the sdcor scale
def theta_blocks(structure) -> list[int]:
    """Sizes ``q`` of the lower-triangular blocks of ``θ`` in θ order (either engine): the
    correlated block then one ``1 x 1`` block per variance component (one factor), or one
    block per term (crossed)."""
    if isinstance(structure, CrossedStructure):
        return list(structure.q)
    return ([structure.k_re] if structure.k_re else []) + [1] * structure.k_vc


def parameter_kinds(structure) -> np.ndarray:
    """``SD`` or ``COR`` for each entry of ``ψ`` (θ order, then σ)."""
    kinds = []
    for q in theta_blocks(structure):
        rows, cols = lower_indices_colwise(q)
        kinds.append(np.where(rows == cols, SD, COR))
    return np.concatenate(kinds + [np.full(1, SD)]).astype(int)


def varpar_to_sdcor(theta: jnp.ndarray, sigma: jnp.ndarray, structure):
    """``ψ (n_theta + 1,)`` from ``(θ, σ)``, block by block of :func:`theta_blocks`."""
    parts, start = [], 0
    for q in theta_blocks(structure):
        rows, cols = lower_indices_colwise(q)
        L = jnp.zeros((q, q), theta.dtype).at[rows, cols].set(theta[start : start + rows.size])
        cov = L @ L.T
        sd_rel = jnp.sqrt(jnp.diag(cov))
        safe = jnp.where(sd_rel > 0, sd_rel, 1.0)
        corr = cov / jnp.outer(safe, safe)
        parts.append(jnp.where(rows == cols, sigma * sd_rel[rows], corr[rows, cols]))
        start += rows.size
    return jnp.concatenate(parts + [sigma[None]])


def sdcor_to_varpar(psi: jnp.ndarray, structure):
    """``(θ, σ)`` from ``ψ`` (inverse of :func:`varpar_to_sdcor`); NaN if a correlation
    matrix is not positive definite."""
    sigma = psi[-1]
    parts, start = [], 0
    for q in theta_blocks(structure):
        rows, cols = lower_indices_colwise(q)
        block = psi[start : start + rows.size]
        sd = jnp.zeros(q, psi.dtype).at[rows[rows == cols]].set(block[rows == cols])
        off = rows != cols
        corr = jnp.eye(q, dtype=psi.dtype)
        corr = (
            corr.at[rows[off], cols[off]].set(block[off]).at[cols[off], rows[off]].set(block[off])
        )
        L = smallmat.cholesky(corr) * (sd / sigma)[:, None]
        parts.append(L[rows, cols])
        start += rows.size
    return jnp.concatenate(parts), sigma


def _from_free(u, kinds):
    return jnp.where(kinds == SD, jnp.exp(u), jnp.tanh(u))


def _to_free(psi, kinds):
    psi = np.asarray(psi, dtype=float)
    sd = kinds == SD
    out = np.empty_like(psi)
    with np.errstate(divide="ignore"):
        out[sd] = np.log(np.maximum(psi[sd], 0.0))
        out[~sd] = np.arctanh(np.clip(psi[~sd], -1.0, 1.0))
    return out


def profile_deviance_psi(psi, data: GroupedData, structure: CovStructure):
    """ML deviance at ``ψ`` (β profiled out); ``+inf`` where ``ψ`` is not valid."""
    theta, sigma = sdcor_to_varpar(psi, structure)
    value = deviance_varpar(jnp.append(theta, sigma), data, structure, False)
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


@partial(jax.jit, static_argnames=("structure",))
def constrained_fit_psi(u0, index, value, data, *, structure: CovStructure):
    """``min d(ψ)`` subject to ``ψ_index = value``, over the other (unconstrained) coordinates.

    Returns:
        ``(deviance, u at the optimum)``.
    """
    kinds = jnp.asarray(parameter_kinds(structure))
    free = jnp.arange(u0.shape[0]) != index

    def objective(u, args):
        data, value = args
        psi = jnp.where(free, _from_free(u, kinds), value)
        return profile_deviance_psi(psi, data, structure)

    result = minimize(objective, u0, (data, value), free, gtol=1e-10)
    return result.value, result.x


def fix_fixed_effect(data, index, value):
    """Cross-products with ``β_index = value`` moved into the response (``p - 1`` columns).

    ``y → y - value x_j`` and column ``j`` dropped: only ``Zty``, ``Xty``, ``yty`` change
    besides the column selection. ``index`` may be traced. Crossed data: ``[X y] → [X y] T``
    with ``T (p+1, p)`` selecting the kept columns and ``y - value x_j``, applied to the
    cross-products with ``[X y]`` (``Z_1'[X y]`` and the ``[X y]`` rows of the dense block).
    """
    if isinstance(data, CrossedData):
        return _fix_fixed_effect_crossed(data, index, value)
    p = data.XtX.shape[0]
    keep = jnp.arange(p - 1) + (jnp.arange(p - 1) >= index)
    xj_z = jnp.take(data.ZtX, index, axis=2)
    xj_x = jnp.take(data.XtX, index, axis=1)
    xj_y = jnp.take(data.Xty, index)
    xj_xj = data.XtX[index, index]
    return GroupedData(
        ZtZ=data.ZtZ,
        ZtX=jnp.take(data.ZtX, keep, axis=2),
        Zty=data.Zty - value * xj_z,
        XtX=data.XtX[jnp.ix_(keep, keep)],
        Xty=jnp.take(data.Xty - value * xj_x, keep),
        yty=data.yty - 2.0 * value * xj_y + value**2 * xj_xj,
        n_obs=data.n_obs,
    )


def _fix_fixed_effect_crossed(data: CrossedData, index, value) -> CrossedData:
    p = data.w1.shape[2] - 1
    M = data.dense.shape[0] - p - 1
    keep = jnp.arange(p - 1) + (jnp.arange(p - 1) >= index)
    E = jnp.eye(p + 1, dtype=data.dense.dtype)
    new_y = E[:, p] - value * jnp.take(E, index, axis=1)
    T = jnp.concatenate([jnp.take(E, keep, axis=1), new_y[:, None]], axis=1)  # (p+1, p)
    top = data.dense[:M, :M]
    cross = data.dense[:M, M:] @ T
    corner = T.T @ data.dense[M:, M:] @ T
    dense = jnp.block([[top, cross], [cross.T, corner]])
    return data._replace(w1=data.w1 @ T, dense=dense)


@partial(jax.jit, static_argnames=("structure",))
def constrained_fit_beta(theta0, index, value, data, *, structure):
    """``min_θ d_ML(θ)`` with ``β_index = value`` (the other fixed effects profiled)."""
    reduced = fix_fixed_effect(data, index, value)
    free = jnp.ones_like(theta0, dtype=bool)
    if isinstance(structure, CrossedStructure):
        from mixedjax.fit.crossed import fit_theta as crossed_fit_theta

        result = crossed_fit_theta(
            theta0, free, reduced, 1e-10, structure=replace(structure, p=structure.p - 1),
            reml=False, method="lbfgs", maxiter=500, newton_steps=8,
        )  # fmt: skip
        return result.value
    result = estimation.fit_theta(theta0, free, reduced, 1e-10, structure=structure, reml=False)
    return result.value


@partial(jax.jit, static_argnames=("structure",))
def _free_hessian(u, data, *, structure: CovStructure):
    """Hessian of the ML deviance in the free coordinates ``u``."""
    kinds = jnp.asarray(parameter_kinds(structure))

    def objective(u):
        return profile_deviance_psi(_from_free(u, kinds), data, structure)

    return jax.hessian(objective)(u)


# ----------------------------------------------------------------- names (lme4's)
def profile_names(model) -> list[str]:
    """lme4's ``confint(..., oldNames = FALSE)`` row names for ``ψ``, then the fixed effects."""
    if isinstance(model.structure, CrossedStructure):
        return _crossed_profile_names(model)
    group = getattr(model, "group_name", "Group")
    terms = list(model.re_terms)
    rows, cols = lower_indices_colwise(model.k_re)
    names = [
        f"sd_{terms[i]}|{group}" if i == j else f"cor_{terms[i]}.{terms[j]}|{group}"
        for i, j in zip(rows, cols, strict=True)
    ]
    for vc_name, colnames in zip(model.vc_names, model.vc_colnames, strict=True):
        if len(colnames) == 1:  # a covariate within the group, e.g. (0 + Days | Subject)
            names.append(f"sd_{vc_name}|{group}")
        elif model.n_groups == 1:  # a single all-rows group: a crossed factor
            names.append(f"sd_(Intercept)|{vc_name}")
        else:  # levels nested in the group, e.g. (1 | batch:cask)
            names.append(f"sd_(Intercept)|{group}:{vc_name}")
    names.append("sigma")
    fixed = ["(Intercept)" if n in ("Intercept", "const") else n for n in model.exog_names]
    return names + fixed


def _crossed_profile_names(model) -> list[str]:
    names = []
    for t in model.terms:  # θ order is lme4's term order
        rows, cols = lower_indices_colwise(t.q)
        for i, j in zip(rows, cols, strict=True):
            a, b = t.names[i], t.names[j]
            names.append(f"sd_{a}|{t.group}" if i == j else f"cor_{a}.{b}|{t.group}")
    fixed = ["(Intercept)" if n in ("Intercept", "const") else n for n in model.exog_names]
    return names + ["sigma"] + fixed


def lme4_row_order(model) -> np.ndarray:
    """Permutation putting :func:`profile_names` rows in lme4's order.

    lme4 sorts random-effect terms by decreasing number of levels (ties keep formula
    order). Here the correlated term has ``n_groups`` levels, a covariate variance
    component too, and a factor variance component one level per (group, column) pair.
    """
    if isinstance(model.structure, CrossedStructure):  # θ is already in lme4's order
        return np.arange(model.structure.n_theta + 1 + model.k_fe)
    blocks, levels = [], []
    if model.k_re:
        blocks.append(list(range(model.k_re2)))
        levels.append(model.n_groups)
    for c, glob in enumerate(model.vc_global_columns):
        blocks.append([model.k_re2 + c])
        single = len(model.vc_colnames[c]) == 1
        levels.append(model.n_groups if single else int(np.sum(glob >= 0)))
    order = np.argsort(-np.asarray(levels), kind="stable")
    head = [i for b in order for i in blocks[b]]
    n_psi = model.k_re2 + model.k_vc + 1
    return np.asarray(head + list(range(n_psi - 1, n_psi + model.k_fe)), dtype=int)


# ----------------------------------------------------------------- the profiler
def _int(i) -> jnp.ndarray:
    return jnp.asarray(int(i), dtype=jnp.int32)  # one dtype: no recompiles per Python type


def _float(x) -> jnp.ndarray:
    return jnp.asarray(float(x), dtype=jnp.float64)


class _Profiler:
    """ζ functions of every parameter of an ML fit (a small stateful helper, not public)."""

    def __init__(self, ml_results):
        model = ml_results.model
        self.model = model
        self.structure = model.structure
        self.data = model.data
        self.kinds = parameter_kinds(self.structure)
        theta = jnp.asarray(ml_results.theta)
        self.psi_hat = np.asarray(
            varpar_to_sdcor(theta, jnp.asarray(np.sqrt(ml_results.scale)), self.structure)
        )
        self.u_hat = _to_free(self.psi_hat, self.kinds)
        self.dev_min = float(ml_results.llf * -2.0)
        self.beta_hat = np.asarray(ml_results.fe_params)
        self.beta_se = np.asarray(ml_results.bse_fe)
        self.theta_hat = np.asarray(ml_results.theta)
        # curvature of d in the free coordinates gives the first step of the root finder
        u = jnp.asarray(np.where(np.isfinite(self.u_hat), self.u_hat, -20.0))
        H = np.asarray(_free_hessian(u, self.data, structure=self.structure))
        diag = np.diag(H)
        self.u_se = np.sqrt(2.0 / np.where(diag > 0, diag, 1.0))
        self.u_se = np.where((diag > 0) & np.isfinite(self.u_se), self.u_se, 1.0)

    def deviance_psi(self, index: int, t: float) -> float:
        value = float(_from_free(jnp.asarray(t), self.kinds[index]))
        u0 = jnp.asarray(np.where(np.isfinite(self.u_hat), self.u_hat, -10.0))
        dev, _ = constrained_fit_psi(
            u0, _int(index), _float(value), self.data, structure=self.structure
        )
        return float(dev)

    def deviance_beta(self, index: int, value: float) -> float:
        dev = constrained_fit_beta(
            jnp.asarray(self.theta_hat),
            _int(index),
            _float(value),
            self.data,
            structure=self.structure,
        )
        return float(dev)

    def zeta(self, k: int, t: float) -> float:
        """Signed root at coordinate ``t`` (free scale for ψ, natural scale for β)."""
        n_psi = len(self.psi_hat)
        if k < n_psi:
            dev, centre = self.deviance_psi(k, t), self.u_hat[k]
        else:
            dev, centre = self.deviance_beta(k - n_psi, t), self.beta_hat[k - n_psi]
        return float(np.sign(t - centre) * np.sqrt(max(dev - self.dev_min, 0.0)))

    def centre_and_step(self, k: int) -> tuple[float, float]:
        n_psi = len(self.psi_hat)
        if k < n_psi:
            return float(self.u_hat[k]), float(self.u_se[k])
        return float(self.beta_hat[k - n_psi]), float(self.beta_se[k - n_psi])

    def to_natural(self, k: int, t: float) -> float:
        if k < len(self.psi_hat):
            return float(_from_free(jnp.asarray(t), self.kinds[k]))
        return float(t)


def _find_root(zeta, centre: float, step: float, target: float, limit: float, tol=1e-9):
    """``t`` with ``zeta(t) = target`` on the side of ``sign(target)``; ``None`` if ``|ζ|``
    stays below ``|target|`` up to ``limit`` (then the bound is the end of the range)."""
    direction = np.sign(target)
    a, za = centre, 0.0
    b = centre + direction * step * abs(target)
    for _ in range(60):  # expand until the root is bracketed (step doubles)
        if direction * (b - limit) > 0:
            b = limit
        zb = zeta(b)
        if direction * (zb - target) >= 0:
            break
        if b == limit:
            return None
        a, za = b, zb
        b = a + 2.0 * (b - centre) if zb == 0 else a + (target - za) * (b - centre) / zb * 1.5
    else:
        return None
    # Illinois regula falsi on the bracket [a, b]
    side = 0
    fa, fb = za - target, zb - target
    for _ in range(100):
        secant = np.isfinite(fa) and np.isfinite(fb) and fb != fa
        c = b - fb * (b - a) / (fb - fa) if secant else 0.5 * (a + b)  # bisect past overflow
        fc = zeta(c) - target
        if abs(fc) < tol or abs(b - a) < 1e-12 * max(1.0, abs(c)):
            return c
        if np.sign(fc) == np.sign(fb):
            b, fb = c, fc
            if side == -1:
                fa *= 0.5
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb *= 0.5
            side = 1
    return c


def _ml_results(results):
    if not results.reml:
        return results
    return results.model.fit(reml=False)


def profile_conf_int(
    results, alpha: float = 0.05, _profiler=None, progress: bool | None = None
) -> pd.DataFrame:
    """Profile-likelihood intervals in lme4's row order and names (columns ``lower``,
    ``upper``); a standard deviation whose profile never reaches the cut-off gets 0 as its
    lower bound, a correlation ±1, as lme4. ``progress``: a bar advancing once per
    parameter (:mod:`mixedjax.core.progress`; ``None``: only in notebooks and terminals)."""
    from mixedjax.inference.fixed_tests import check_alpha

    z = float(norm_ppf(1 - check_alpha(alpha) / 2))
    prof = _profiler if _profiler is not None else _Profiler(_ml_results(results))
    names = profile_names(results.model)
    n_psi = len(prof.psi_hat)
    lower, upper = [], []
    bar = progress_bar(total=len(names), desc="profile CIs", unit="parameters", enabled=progress)
    for k in range(len(names)):
        bar.set_description(f"profile CIs ({names[k]})")
        centre, step = prof.centre_and_step(k)
        bounds = []
        for target in (-z, z):
            if k < n_psi and not np.isfinite(centre):  # a standard deviation estimated at 0
                bounds.append(0.0 if target < 0 else np.nan)
                continue
            if k < n_psi:
                limit = centre + np.sign(target) * 30.0  # e^±30 relative change / |cor| → 1
            else:
                limit = centre + np.sign(target) * 1e3 * step
            t = _find_root(lambda t, k=k: prof.zeta(k, t), centre, step, target, limit)
            if t is None:
                end = 0.0 if prof.kinds[min(k, n_psi - 1)] == SD else np.sign(target)
                bounds.append(end if k < n_psi else np.sign(target) * np.inf)
            else:
                bounds.append(prof.to_natural(k, t))
        if k < n_psi and not np.isfinite(centre):
            t = _find_root(lambda t, k=k: prof.zeta(k, t), -10.0, 1.0, z, 30.0)
            bounds[1] = prof.to_natural(k, t) if t is not None else np.inf
        lower.append(bounds[0])
        upper.append(bounds[1])
        bar.update()
    bar.close()
    frame = pd.DataFrame({"lower": lower, "upper": upper}, index=names)
    return frame.iloc[lme4_row_order(results.model)]


def profile_traces(
    results, alpha: float = 0.01, n_points: int = 11, progress: bool | None = None
) -> pd.DataFrame:
    """ζ on a grid for every parameter (for plotting): columns ``parameter``, ``value``,
    ``zeta``. The grid spans the ``1 - alpha`` profile interval (on the free scale for
    variance parameters) with ``n_points`` points per side, each point a constrained refit.
    ``progress``: bars per parameter for the interval search and for the traces."""
    prof = _Profiler(_ml_results(results))
    ci = profile_conf_int(results, alpha, _profiler=prof, progress=progress)
    n_psi = len(prof.psi_hat)
    names = profile_names(results.model)
    ci = ci.loc[names]  # back to the internal order of ψ
    frames = []
    bar = progress_bar(total=len(names), desc="profile traces", unit="parameters", enabled=progress)
    for k, name in enumerate(names):
        lo, hi = ci.iloc[k]
        centre, _ = prof.centre_and_step(k)
        if k < n_psi:
            kind = prof.kinds[k]
            lo_t, hi_t = _to_free(np.array([lo, hi]), np.array([kind, kind]))
            lo_t = lo_t if np.isfinite(lo_t) else centre - 5.0
            hi_t = hi_t if np.isfinite(hi_t) else centre + 5.0
        else:
            lo_t, hi_t = lo, hi
        grid = np.concatenate(
            [np.linspace(lo_t, centre, n_points + 1)[:-1], np.linspace(centre, hi_t, n_points)]
        )
        # One constrained refit per grid point with the kernels the interval search has
        # already compiled (a vmapped copy would compile again, ~10x the refits' cost).
        if k < n_psi:
            values = np.asarray(_from_free(jnp.asarray(grid), prof.kinds[k]))
            devs = [prof.deviance_psi(k, t) for t in grid]
        else:
            values = grid
            devs = [prof.deviance_beta(k - n_psi, v) for v in grid]
        dev = np.maximum(np.asarray(devs) - prof.dev_min, 0.0)
        zeta = np.sign(grid - centre) * np.sqrt(dev)
        frames.append(pd.DataFrame({"parameter": name, "value": values, "zeta": zeta}))
        bar.update()
    bar.close()
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------- statsmodels' profile_re
@partial(jax.jit, static_argnames=("structure", "reml"))
def _profile_re_batch(theta0s, free, data, *, structure: CovStructure, reml: bool):
    """Constrained refits for a batch of starts (held entries of θ at their start values)."""

    def one(theta0):
        result = estimation.fit_theta(theta0, free, data, 1e-10, structure=structure, reml=reml)
        est = estimation.estimates_at(result.x, data, structure=structure, reml=reml)
        return est.objective, est.scale

    return jax.vmap(one)(theta0s)


def _permute_random_effects(data: GroupedData, perm: np.ndarray) -> GroupedData:
    return data._replace(
        ZtZ=data.ZtZ[:, perm][:, :, perm], ZtX=data.ZtX[:, perm], Zty=data.Zty[:, perm]
    )


def profile_re(
    results,
    re_ix,
    vtype: str,
    num_low: int = 5,
    dist_low: float = 1.0,
    num_high: int = 5,
    dist_high: float = 1.0,
) -> np.ndarray:
    """statsmodels' ``profile_re``: the log-likelihood (REML for REML fits) with one
    random-effect variance held fixed, the other parameters refitted.

    As statsmodels, the held quantity is the *profile-scale* variance ``Ψ₁[j, j] = Ψ[j, j]/σ²``
    (``vtype="re"``, ``re_ix`` an index of ``exog_re``) or ``τ₁`` (``vtype="vc"``,
    ``re_ix`` a variance-component name), on a grid from ``(v - dist_low)/σ̂²`` to
    ``(v + dist_high)/σ̂²`` with ``v`` the data-scale estimate. All refits run as one vmapped
    batch.

    Returns:
        ``(num_low + num_high + 1, 2)`` rows of ``(held value × σ̂²(value), llf)``.
    """
    from mixedjax.core.covariance import cov_to_theta

    model = results.model
    structure = model.structure
    cov1 = np.asarray(results.cov_re_unscaled)
    vc1 = results.vcomp / results.scale
    r = structure.n_random
    if vtype == "re":
        if not (isinstance(re_ix, int | np.integer) and 0 <= re_ix < model.k_re):
            raise ValueError(f"re_ix must be an index in [0, {model.k_re}) for vtype='re'")
        ix = np.arange(model.k_re)
        ix[0], ix[re_ix] = re_ix, 0
        perm = np.concatenate([ix, np.arange(model.k_re, r)])
        data = _permute_random_effects(model.data, perm)
        cov1 = cov1[np.ix_(ix, ix)]
        held, centre = 0, cov1[0, 0]
    elif vtype == "vc":
        if re_ix not in model.vc_names:
            raise ValueError(f"re_ix must be one of the variance components {model.vc_names}")
        c = model.vc_names.index(re_ix)
        data = model.data
        held, centre = structure.k_re2 + c, vc1[c]
    else:
        raise ValueError(f"vtype must be 're' or 'vc', got {vtype!r}")
    low = centre - dist_low / results.scale
    high = centre + dist_high / results.scale
    if low <= 0:
        raise ValueError(
            "dist_low is too large and would result in a negative variance. Try a smaller value."
        )
    values = np.concatenate(
        [np.linspace(low, centre, num_low + 1), np.linspace(centre, high, num_high + 1)[1:]]
    )
    theta0 = cov_to_theta(cov1, vc1, structure)
    starts = np.tile(theta0, (values.size, 1))
    # θ[held] is the first column's diagonal (or √τ₁): Ψ₁[0, 0] = θ[held]²
    starts[:, held] = np.sqrt(values)
    free = np.ones(structure.n_theta, dtype=bool)
    free[held] = False
    objective, scale = _profile_re_batch(
        jnp.asarray(starts), jnp.asarray(free), data, structure=structure, reml=results.reml
    )
    return np.column_stack([values * np.asarray(scale), -0.5 * np.asarray(objective)])
